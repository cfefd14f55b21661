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


def cached(root, cache_dir) -> float:
    from benchmark.data import discover, load_images

    images = load_images(root, discover(root).train, SIZE, 1, cache_dir, log=lambda m: None)
    return float(np.asarray(images.pixels).sum())


def measure(root) -> list[str]:
    with Timer() as t_naive:
        for _ in range(USES):
            naive(root / "train")
    with tempfile.TemporaryDirectory() as cache:
        with Timer() as t_first:
            cached(root, cache)  # decodes and writes the cache
        with Timer() as t_warm:
            for _ in range(USES - 1):
                cached(root, cache)
    run_total = t_first.wall + t_warm.wall
    n = sum(1 for p in (root / "train").rglob("*") if p.is_file())
    return [
        f"- `{root.name}` ({n} images → {SIZE} px), {USES} uses: naive {t_naive.wall:.1f} s "
        f"(CPU/wall {t_naive.ratio:.2f}); cached {run_total:.2f} s in all — first use (decode + write) "
        f"{t_first.wall:.2f} s (CPU/wall {t_first.ratio:.2f}), each warm use {t_warm.wall / (USES - 1) * 1000:.0f} ms "
        f"→ **{t_naive.wall / run_total:.1f}× faster** over the run; warm use vs first use "
        f"{t_first.wall / (t_warm.wall / (USES - 1)):.0f}× faster.",
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
