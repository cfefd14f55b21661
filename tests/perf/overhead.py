"""Overhead: a whole ``benchmark run`` against the model's own time (fit + predict) inside it.

    python -m tests.perf.overhead [--image-size 32]

Every fold's metrics.json records fit_seconds and predict_seconds; the ratio of the
process's wall time to their sum is what the tool adds (data, splits, metrics, files,
reports, start-up).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from tests.perf.common import BENCHMARK, DATA_224, record, run_timed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--image-size", default="32")
    parser.add_argument("--archs", default="all")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cache = str(Path(tmp) / "cache")
        cmd = [*BENCHMARK, "run", "--data", str(DATA_224), "--folds", "5", "--archs", args.archs,
               "--image-size", args.image_size, "--out", str(out), "--cache-dir", cache, "-q"]  # fmt: skip
        wall, cpu, rss = run_timed(cmd)
        model = 0.0
        for metrics in out.glob("*/fold-*/metrics.json"):
            record_ = json.loads(metrics.read_text())
            model += record_["fit_seconds"] + record_["predict_seconds"]
    shown = f"benchmark run --folds 5 --archs {args.archs} --image-size {args.image_size} (full Kaggle train split)"
    record(
        f"Overhead at {args.image_size} px (target ≤ 1.15)",
        shown,
        [
            f"- whole process {wall:.0f} s wall (CPU {cpu:.0f} s, CPU/wall {cpu / wall:.2f}, peak RSS {rss:.0f} MiB), "
            f"including the first decode of the cache; model fit + predict {model:.0f} s → "
            f"**overhead ratio {wall / model:.3f}**.",
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
