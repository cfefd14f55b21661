"""How far off the progress line's ETA was at the halfway point of a finished run.

    python -m tests.perf.eta RUN_DIR [--since ISO-TIME]

Replays the run's folds in the order they finished (each fold's metrics.json: its ``task_seconds``
and the file's modification time) through ``benchmark.progress.Progress``, the estimator the
progress line prints, and through the plain average over all folds measured so far. At the
halfway fold each estimate is compared with the time the remaining folds really took (clock
time from that fold's metrics.json to the last one's) and with the remaining folds' own training time
(their summed ``task_seconds``: what a run that was stopped and resumed took without its gaps).
The figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

from benchmark.progress import Progress


def finished_folds(run: Path) -> list[tuple[str, float, float]]:
    """(architecture, task seconds, finish time) of every trained fold, in the order they finished."""
    rows = []
    for path in run.glob("*/fold-*/metrics.json"):
        record = json.loads(path.read_text())
        rows.append((path.parent.parent.name, record["task_seconds"], path.stat().st_mtime))
    return sorted(rows, key=lambda row: row[2])


def halfway(rows: list[tuple[str, float, float]]) -> dict:
    """The estimates after the first half of the folds, and the time the second half took."""
    progress = Progress([arch for arch, _, _ in rows], quiet=True)
    half = len(rows) // 2
    for arch, seconds, _ in rows[:half]:
        progress.fold_done(arch, 0, 1, None, seconds)
    measured = [seconds for _, seconds, _ in rows[:half]]
    actual = rows[-1][2] - rows[half - 1][2]
    trained = sum(seconds for _, seconds, _ in rows[half:])  # without the gaps of a stopped and resumed run
    per_arch = progress.eta_seconds()
    average = sum(measured) / len(measured) * (len(rows) - half)
    return {
        "folds": len(rows),
        "after": half,
        "actual_s": actual,
        "trained_s": trained,
        "eta_per_arch_s": per_arch,
        "error_per_arch": per_arch / actual - 1,
        "error_per_arch_vs_trained": per_arch / trained - 1,
        "eta_average_s": average,
        "error_average": average / actual - 1,
        "error_average_vs_trained": average / trained - 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--since", type=datetime.fromisoformat, help="only folds finished then or later (one resume)")
    args = parser.parse_args()
    rows = finished_folds(args.run)
    if args.since:
        rows = [row for row in rows if row[2] >= args.since.timestamp()]
    if len(rows) < 2:
        raise SystemExit(f"{args.run}: {len(rows)} finished fold(s) to replay; two or more are needed")
    print(json.dumps(halfway(rows), indent=1))


if __name__ == "__main__":
    main()
