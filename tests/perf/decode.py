"""Decode once: the memory-mapped cache against decoding per (fold, architecture).

A 5-fold × 3-architecture run needs its images 15 times. The naive pipeline decodes
them each time with ``keras.utils.image_dataset_from_directory``; the tool decodes
once into a cache (``benchmark.data.images.load_images``) and maps it afterwards.
"""

from __future__ import annotations

import sys
import tempfile

import numpy as np

from tests.perf.common import DATA_224, DATA_FULLRES, Timer, median, record

USES = 15  # 5 folds × 3 architectures
SIZE = 56


def naive(split_dir) -> float:
    """Decode, resize and read every image once, as a per-(fold, arch) tf.data pipeline would."""
    import keras

    ds = keras.utils.image_dataset_from_directory(
        split_dir, image_size=(SIZE, SIZE), color_mode="grayscale", batch_size=64, shuffle=False, verbose=False
    )
    return float(sum(float(np.asarray(x).sum()) for x, _ in ds))


def load(root, cache_dir):
    from benchmark.data.images import discover, load_images

    return load_images(root, discover(root).train, SIZE, 1, cache_dir, log=lambda m: None)


def read(images) -> float:
    return float(np.asarray(images.pixels).sum())


def pre_read(root) -> None:
    """Read every file once, untimed, so that no timed pass waits on the disk (all read from the page cache)."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            path.read_bytes()


def measure(root, reps: int = 3) -> list[str]:
    """Naive: decode per use. Cached, as `benchmark run` does: one load (decode + write on a cold cache,
    a memory map on a warm one) per run, then every use reads the mapped pixels. The three are timed in
    turns, ``reps`` times, after an untimed pre-read; medians are reported."""
    pre_read(root)
    times = {"naive": [], "cold": [], "warm": [], "load cold": [], "load warm": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(reps):
            with Timer() as t:
                for _ in range(USES):
                    naive(root / "train")
            times["naive"].append(t)
            cache = tempfile.mkdtemp(dir=tmp)
            with Timer() as t:  # the first run: decode and write the cache, then 15 uses
                images = load(root, cache)
                for _ in range(USES):
                    read(images)
            times["cold"].append(t)
            with Timer() as t:  # a second run: map the cache written by the first, then 15 uses
                images = load(root, cache)
                for _ in range(USES):
                    read(images)
            times["warm"].append(t)
            with Timer() as t:
                load(root, tempfile.mkdtemp(dir=tmp))  # decode + write alone
            times["load cold"].append(t)
            with Timer() as t:
                load(root, cache)  # list the files, check the key, map the cache
            times["load warm"].append(t)
    wall = {k: median([t.wall for t in v]) for k, v in times.items()}
    ratio = {k: median([t.ratio for t in v]) for k, v in times.items()}
    n = sum(1 for p in (root / "train").rglob("*") if p.is_file())
    return [
        f"- `{root.name}` ({n} images → {SIZE} px), {USES} uses, medians of {reps} interleaved rounds: naive "
        f"{wall['naive']:.2f} s (CPU/wall {ratio['naive']:.2f}); cached, first run {wall['cold']:.2f} s (CPU/wall "
        f"{ratio['cold']:.2f}) → **{wall['naive'] / wall['cold']:.1f}× faster**; second run (warm cache) "
        f"{wall['warm']:.2f} s → {wall['naive'] / wall['warm']:.1f}× faster. Loading alone: cold "
        f"{wall['load cold']:.2f} s (decode + write), warm {wall['load warm'] * 1000:.0f} ms (list, key, map): "
        f"{wall['load cold'] / wall['load warm']:.0f}× faster. Naive rounds: "
        f"{', '.join(f'{t.wall:.2f}' for t in times['naive'])} s.",
    ]


def main() -> None:
    lines = measure(DATA_FULLRES) + measure(DATA_224)
    lines.append(
        "\nThe naive pipeline decodes with TensorFlow's JPEG decoder and resizes bilinearly in float; the cache "
        "decodes with Pillow (`draft` mode for large JPEGs) in threads. Every file was read once before timing, "
        "so no pass waits on the disk."
    )
    record("Decode once (target ≥ 5×)", "python -m tests.perf.decode", lines)


if __name__ == "__main__":
    sys.exit(main())
