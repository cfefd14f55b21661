"""Parallel workers: ``--jobs 2`` against ``--jobs 1`` on 2 cores, where one small training cannot
use both cores; the same command otherwise, interleaved, twice each; the results must be identical."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from tests.perf.common import BENCHMARK, DATA_224, median, record, run_timed

# Enough epochs that the trainings, not the workers' start-up (importing TensorFlow), dominate; no saved
# models, so no held-out stage: only the part that --jobs parallelises is timed, plus the start-up.
ARGS = ["--archs", "baseline", "--folds", "4", "--epochs", "8", "--patience", "8", "--image-size", "32",
        "--deterministic", "--no-save-models", "-q"]  # fmt: skip


def command(out: Path, cache: Path, jobs: int) -> list[str]:
    return [*BENCHMARK, "run", "--data", str(DATA_224), "--out", str(out), "--cache-dir", str(cache), *ARGS,
            "--jobs", str(jobs)]  # fmt: skip


def main() -> None:
    times = {1: [], 2: []}
    metrics = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        for rep in range(2):
            for jobs in (1, 2):
                out = Path(tmp) / f"jobs{jobs}-{rep}"
                if rep == 0 and jobs == 1:  # decode the cache first, untimed
                    run_timed(command(Path(tmp) / "warm", cache, 1))
                cmd = command(out, cache, jobs)
                wall, cpu, _ = run_timed(cmd)
                times[jobs].append((wall, cpu))
                results = json.loads((out / "results.json").read_text())
                metrics.setdefault(jobs, results["architectures"][0]["metrics"])
    one, two = (median([w for w, _ in times[j]]) for j in (1, 2))
    lines = [
        f"- `--jobs 1`: {one:.1f} s wall (runs: {', '.join(f'{w:.1f} s, CPU/wall {c / w:.2f}' for w, c in times[1])})",
        f"- `--jobs 2`: {two:.1f} s wall (runs: {', '.join(f'{w:.1f} s, CPU/wall {c / w:.2f}' for w, c in times[2])})",
        f"- **speed-up {one / two:.2f}×** (medians, whole processes including start-up); results.json metrics "
        f"identical: {metrics[1] == metrics[2]}.",
    ]
    record("Parallel workers at 32 px", "benchmark run " + " ".join(ARGS) + " --jobs 1|2", lines)
    if metrics[1] != metrics[2]:
        raise SystemExit("--jobs 2 gave other results than --jobs 1: the parallel executor is broken")


if __name__ == "__main__":
    sys.exit(main())
