"""Compute efficiency on the CPU: training FLOP/s of `baseline` against the machine's matmul peak.

FLOPs are counted from the layers (2 per multiply-add; training ≈ 3 × forward:
the backward pass costs about twice the forward one). Configurations are measured
in turns (interleaved), twice each, and the median epoch time is kept.
"""

from __future__ import annotations

import sys
import tempfile
import time

import numpy as np

from benchmark.training.flops import forward_flops
from tests.perf.common import DATA_224, Timer, median, record


def matmul_peak(n: int = 2048, reps: int = 7) -> tuple[float, float]:
    """Median fp32 matmul GFLOP/s with numpy (OpenBLAS) and TensorFlow (oneDNN/Eigen)."""
    import tensorflow as tf

    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    ta = tf.constant(a)
    np_times, tf_times = [], []
    for _ in range(reps):
        start = time.perf_counter()
        a @ a
        np_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        tf.linalg.matmul(ta, ta).numpy()
        tf_times.append(time.perf_counter() - start)
    flops = 2 * n**3
    return flops / median(np_times) / 1e9, flops / median(tf_times) / 1e9


def epoch_seconds(images, n: int, batch: int, augment: str, jit: bool) -> tuple[float, float]:
    """Median seconds of epochs 2–3 of the tool's wrapped baseline on the first ``n`` images; CPU/wall."""
    import keras

    import architectures
    from benchmark.training.fit import assemble

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    x, y = images.pixels[:n], images.labels[:n].astype("float32")
    model, _ = assemble(architectures.get("baseline").build, x.shape[1:], augment)
    model.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=jit)
    times = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    with Timer() as t:
        model.fit(x, y, batch_size=batch, epochs=3, verbose=0, callbacks=[Clock()])
    return median(times[1:]), t.ratio


def main() -> None:
    import architectures
    from benchmark.data.images import discover, load_images

    np_peak, tf_peak = matmul_peak()
    peak = max(np_peak, tf_peak)
    lines = [
        f"- fp32 matmul 2048², median of 7: numpy {np_peak:.1f} GFLOP/s, TensorFlow {tf_peak:.1f} GFLOP/s "
        f"(peak used below: {peak:.1f}).",
        "",
        "| size | configuration | images | s/epoch (median) | img/s | train GFLOP/img | GFLOP/s | % of peak "
        "| CPU/wall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    dataset = discover(DATA_224)
    default = ("batch 64, augmentation (the tool's default)", 64, "light", False)
    plain = ("batch 64, no augmentation", 64, "none", False)
    larger = ("batch 128, augmentation", 128, "light", False)
    compiled = ("batch 64, augmentation, jit_compile", 64, "light", True)
    configs = {64: [default, plain, larger, compiled], 128: [default, plain]}
    counts = {64: 2048, 128: 1024}
    with tempfile.TemporaryDirectory() as cache:
        for size, options in configs.items():
            images = load_images(DATA_224, dataset.train, size, 1, cache, log=lambda m: None)
            train_flops = 3 * forward_flops(architectures.create("baseline", (size, size, 1)))
            results = {name: [] for name, *_ in options}
            for _ in range(2):  # interleaved repetitions
                for name, batch, augment, jit in options:
                    results[name].append(epoch_seconds(images, counts[size], batch, augment, jit))
            for name, runs in results.items():
                seconds = median([s for s, _ in runs])
                rate = counts[size] / seconds
                gflops = rate * train_flops / 1e9
                ratio = median([r for _, r in runs])
                lines.append(
                    f"| {size} | {name} | {counts[size]} | {seconds:.2f} | {rate:.0f} | {train_flops / 1e9:.3f} | "
                    f"{gflops:.1f} | {100 * gflops / peak:.0f} % | {ratio:.2f} |"
                )
    record(
        "Compute efficiency of `baseline` on the CPU (aim ≥ 50 % of the matmul peak)",
        "python -m tests.perf.flops",
        lines,
    )


if __name__ == "__main__":
    sys.exit(main())
