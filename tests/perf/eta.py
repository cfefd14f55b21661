"""How far off the progress line's ETA was at 10 %, 25 % and 50 % of a finished run's folds.

    python -m tests.perf.eta RUN_DIR [--since ISO-TIME]

Replays the run's folds in the order they finished (each fold's metrics.json: its ``task_seconds``
and the file's modification time; with one job, the time between two folds' files, as the live line
measures it) through ``benchmark.progress.Progress``, the estimator the progress line prints, twice:
with each architecture's forward FLOPs at the run's size (what the runner gives it: the prior before an
architecture's first fold) and without (each architecture's own mean once measured, the mean of the
measured ones before). At each point the estimate is compared with the time the remaining folds really
took (clock time from that fold's metrics.json to the last one's).
The figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

from benchmark.progress import Progress
from benchmark.runner import check_builds

POINTS = (0.10, 0.25, 0.50)


def finished_folds(run: Path) -> list[tuple[str, float, float]]:
    """(architecture, task seconds, finish time) of every trained fold, in the order they finished."""
    rows = []
    for path in run.glob("*/fold-*/metrics.json"):
        record = json.loads(path.read_text())
        rows.append((path.parent.parent.name, record["task_seconds"], path.stat().st_mtime))
    return sorted(rows, key=lambda row: row[2])


def errors(rows: list[tuple[str, float, float]], costs: dict[str, float], jobs: int) -> list[dict]:
    """At each of POINTS: the ETA with and without the FLOPs prior, the time the rest took, the errors."""
    out = []
    for point in POINTS:
        done = max(1, round(point * len(rows)))
        actual = rows[-1][2] - rows[done - 1][2]
        row = {"after": f"{done}/{len(rows)}", "actual_s": round(actual)}
        for name, prior in (("flops", costs), ("measured_only", {})):
            progress = Progress([arch for arch, _, _ in rows], quiet=True, jobs=jobs, costs=prior)
            for k, (arch, seconds, finished) in enumerate(rows[:done]):
                since = finished - rows[k - 1][2] if k else seconds  # one job: as the live line, the gap between folds
                progress.fold_done(arch, 0, 1, None, max(seconds, since) if jobs == 1 else seconds)
            eta = progress.eta_seconds()
            row |= {f"eta_{name}_s": round(eta), f"error_{name}": f"{eta / actual - 1:+.0%}"}
        out.append(row)
    return out


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
    settings = json.loads((args.run / "config.json").read_text())["settings"]
    shape = (settings["image_size"], settings["image_size"], settings["channels"])
    classes = len(json.loads((args.run / "results.json").read_text())["run"].get("class_names", [0, 1]))
    costs = check_builds(sorted({arch for arch, _, _ in rows}), shape, classes)
    jobs = settings["jobs"] if isinstance(settings["jobs"], int) else 1
    print(json.dumps(errors(rows, costs, jobs), indent=1))


if __name__ == "__main__":
    main()
