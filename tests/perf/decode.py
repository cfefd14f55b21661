"""Decode once: the memory-mapped cache against decoding per (fold, architecture).

A 5-fold × 3-architecture run needs its images 15 times. The naive pipeline decodes
them each time with ``keras.utils.image_dataset_from_directory``; the tool decodes
once into a cache (``benchmark.data.load_images``) and maps it afterwards.
"""

from __future__ import annotations

import sys
import tempfile

import numpy as np

from tests.perf.common import DATA_224, DATA_FULLRES, Timer, record

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
    from benchmark.data import discover, load_images

    return load_images(root, discover(root).train, SIZE, 1, cache_dir, log=lambda m: None)


def read(images) -> float:
    return float(np.asarray(images.pixels).sum())


def measure(root) -> list[str]:
    """Naive: decode per use. Cached, as `benchmark run` does: one load (decode + write on a cold cache,
    a memory map on a warm one) per run, then every use reads the mapped pixels."""
    with Timer() as t_naive:
        for _ in range(USES):
            naive(root / "train")
    with tempfile.TemporaryDirectory() as cache:
        with Timer() as t_cold:  # the first run: decode and write the cache, then 15 uses
            images = load(root, cache)
            for _ in range(USES):
                read(images)
        with Timer() as t_load_cold:
            load(root, tempfile.mkdtemp(dir=cache))  # decode + write alone
        with Timer() as t_warm:  # a second run: map the cache written by the first, then 15 uses
            images = load(root, cache)
            for _ in range(USES):
                read(images)
        with Timer() as t_load_warm:
            load(root, cache)  # list the files, check the key, map the cache
    n = sum(1 for p in (root / "train").rglob("*") if p.is_file())
    return [
        f"- `{root.name}` ({n} images → {SIZE} px), {USES} uses: naive {t_naive.wall:.2f} s (CPU/wall "
        f"{t_naive.ratio:.2f}); cached, first run {t_cold.wall:.2f} s (CPU/wall {t_cold.ratio:.2f}) → "
        f"**{t_naive.wall / t_cold.wall:.1f}× faster**; second run (warm cache) {t_warm.wall:.2f} s → "
        f"{t_naive.wall / t_warm.wall:.1f}× faster. Loading alone: cold {t_load_cold.wall:.2f} s (decode + write), "
        f"warm {t_load_warm.wall * 1000:.0f} ms (list, key, map): {t_load_cold.wall / t_load_warm.wall:.0f}× faster.",
    ]


def main() -> None:
    lines = measure(DATA_FULLRES) + measure(DATA_224)
    lines.append(
        "\nThe naive pipeline decodes with TensorFlow's JPEG decoder and resizes bilinearly in float; the cache "
        "decodes with Pillow (`draft` mode for large JPEGs) in threads. Warm uses read the .npy from the page cache."
    )
    record("Decode once (target ≥ 5×)", "python -m tests.perf.decode", lines)


if __name__ == "__main__":
    sys.exit(main())
