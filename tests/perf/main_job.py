"""Time the README's main job as a whole process, and the tool's overhead from the run folder it keeps.

    python -m tests.perf.main_job [--out DIR] [extra benchmark-run flags]

Wall time, CPU time and peak RSS of ``benchmark run --folds 5 --archs all``; then, from the kept run
folder, the sum of every fold's fit + predict seconds (metrics.json) and the ratio of the wall time to
it: what the tool adds (decoding, splits, metrics, files, held-out scoring, Grad-CAM, reports, start-up).
Not part of ``tox -e perf`` (≈ 40 min on 2 vCPUs); the figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from tests.perf.common import BENCHMARK, record, run_timed


def overhead(out: Path, wall: float) -> tuple[float, float]:
    """(model seconds, wall / model seconds) from the run folder's metrics.json files."""
    model = sum(
        r["fit_seconds"] + r["predict_seconds"]
        for r in (json.loads(p.read_text()) for p in out.glob("*/fold-*/metrics.json"))
    )
    return model, wall / model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, help="keep the run folder here (default: a temporary folder)")
    args, extra = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "run"
        cmd = [*BENCHMARK, "run", "--folds", "5", "--archs", "all", "--out", str(out), "-q", *extra]
        wall, cpu, rss = run_timed(cmd)
        model, ratio = overhead(out, wall)
        folds = len(list(out.glob("*/fold-*/metrics.json")))
    shown = "benchmark run --folds 5 --archs all" + (" " + " ".join(extra) if extra else "")
    record(
        "The main job and its overhead (target ≤ 1.15)",
        f"python -m tests.perf.main_job  # {shown}",
        [
            f"- whole process {wall:.0f} s wall ({wall / 60:.1f} min), CPU {cpu:.0f} s (CPU/wall {cpu / wall:.2f}), "
            f"peak RSS {rss:.0f} MiB; {folds} folds trained.",
            f"- fit + predict summed over the folds' metrics.json: {model:.0f} s → **overhead ratio {ratio:.3f}** "
            "(decoding, held-out scoring, Grad-CAM, reports and start-up included).",
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
