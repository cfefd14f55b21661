"""Memory: peak RSS of a run at 128 px on the full training split against cache + model memory.

The cache is memory-mapped, so the pixels count once however many folds use them;
what else a process holds is the backend's runtime and the batches in flight.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tests.perf.common import BENCHMARK, DATA_224, record, run_timed

SIZE = 128
RUNTIME = """
import keras, numpy as np, architectures
model = architectures.create("baseline", ({s}, {s}, 1))
model.compile(optimizer="adam", loss="binary_crossentropy")
model.fit(np.zeros((64, {s}, {s}, 1), "float32"), np.zeros(64), batch_size=64, epochs=1, verbose=0)
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        cmd = [*BENCHMARK, "run", "--data", str(DATA_224), "--archs", "baseline", "--folds", "5", "--epochs", "1",
               "--image-size", str(SIZE), "--out", str(Path(tmp) / "run"), "--cache-dir", str(cache), "-q"]  # fmt: skip
        run_timed(cmd)  # the first run decodes the cache; the second, started afresh, maps it
        wall, cpu, rss = run_timed([*cmd, "--overwrite"])
        cache_mib = sum(p.stat().st_size for p in cache.glob("*.npy")) / 2**20
        _, _, runtime = run_timed([sys.executable, "-c", RUNTIME.format(s=SIZE)])
    import architectures

    params = architectures.create("baseline", (SIZE, SIZE, 1)).count_params()
    weights = params * 4 * 4 / 2**20  # weights, gradients and Adam's two moments, float32
    record(
        f"Memory at {SIZE} px (target: peak RSS ≤ 1.5 × (cache + model memory))",
        "benchmark " + " ".join(cmd[len(BENCHMARK) : len(BENCHMARK) + 13]),
        [
            f"- peak RSS of the run {rss:.0f} MiB ({wall:.0f} s wall, CPU/wall {cpu / wall:.2f}); image cache "
            f"{cache_mib:.0f} MiB (train + test splits); model state {weights:.1f} MiB ({params:,} parameters).",
            f"- a bare process that imports Keras/TensorFlow and fits `baseline` on one batch at {SIZE} px peaks at "
            f"{runtime:.0f} MiB: that is the backend runtime plus one batch's activations.",
            f"- ratio peak / (cache + model state) = {rss / (cache_mib + weights):.2f}; "
            f"peak / (cache + bare training process) = {rss / (cache_mib + runtime):.2f}.",
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
