"""Compiled training on the CPU: this tree against the last commit before it (4ba55ee), interleaved.

    python -m tests.perf.compiled [--reps 3]

- JAX (``KERAS_BACKEND=jax``): a small real-data run (600 images of the Kaggle train split, 56 px,
  2 folds × 3 epochs, ``baseline`` and ``pyramid_bn_gap``). Before, Keras ran the training step
  eagerly (the augmentation layers turned ``jit_compile`` off); now it is XLA-compiled.
  Figure: the summed ``fit_seconds`` of the saved folds, whole-process wall and CPU time, and the
  CV summary of both trees (the same folds and seeds).
- TensorFlow: ``--archs baseline`` on the full train split (5,216 images, 56 px), 3 folds × 4 epochs.
  Its path stays a tf.function graph without XLA; it must be no slower.

Every run starts with an empty cache folder (images and JAX's compilation cache), so only the
run's own folds share compiled programs; one more run then shows a warm compilation cache. Where
a compiled fold's time goes is read from its metrics.json: compilation ≈ the first epoch minus the
median of the others.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.perf.common import DATA_224, ROOT, median, record, run_timed

BEFORE = "4ba55ee"  # main before compiled training (issue 12)
JAX_ARGS = ["--folds", "2", "--epochs", "3", "--archs", "baseline,pyramid_bn_gap", "--no-save-models", "-q"]
TF_ARGS = ["--folds", "3", "--epochs", "4", "--archs", "baseline", "--no-save-models", "-q"]


def subset(dest: Path, per_class: dict[str, int]) -> Path:
    """A train/ folder of links to the first images of each class."""
    for cls, n in per_class.items():
        folder = dest / "train" / cls
        folder.mkdir(parents=True)
        for f in sorted((DATA_224 / "train" / cls).iterdir())[:n]:
            (folder / f.name).symlink_to(f)
    return dest


def folds(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*/fold-*/metrics.json"))]


def summary(out: Path) -> str:
    archs = json.loads((out / "results.json").read_text())["architectures"]
    return "; ".join(
        f"{a['name']} F1 {a['metrics']['f1']['mean']:.4f}, ROC-AUC {a['metrics']['roc_auc']['mean']:.4f}" for a in archs
    )


def timed_run(tree: Path, data: Path, out: Path, cache: Path, args: list[str], env: dict) -> dict:
    cmd = [sys.executable, "-m", "benchmark.cli", "run", "--data", str(data), "--out", str(out),
           "--cache-dir", str(cache), *args]  # fmt: skip
    wall, cpu, _ = run_timed(cmd, cwd=tree, env=env)  # python -m imports the tree's own package
    return {"wall": wall, "cpu": cpu, "folds": folds(out), "summary": summary(out)}


def compare(tmp: Path, data: Path, args: list[str], env: dict, reps: int, tag: str) -> dict:
    """Run both trees in turns (before, now, before, now, ...) after one untimed round (the page cache)."""
    trees = {"before": tmp / "before", "now": ROOT}
    runs: dict[str, list] = {name: [] for name in trees}
    for rep in range(reps + 1):
        for name, tree in trees.items():
            run = timed_run(tree, data, tmp / f"{tag}-{name}-{rep}", tmp / f"cache-{tag}-{name}-{rep}", args, env)
            if rep:
                runs[name].append(run)
    runs["now, warm compilation cache"] = [
        timed_run(ROOT, data, tmp / f"{tag}-warm", tmp / f"cache-{tag}-now-{reps}", args, env)
    ]
    return runs


def lines_for(runs: dict) -> list[str]:
    out = []
    for name, rs in runs.items():
        fit = [sum(f["fit_seconds"] for f in r["folds"]) for r in rs]
        out.append(
            f"- {name}: summed fit {median(fit):.1f} s (runs {', '.join(f'{x:.1f}' for x in fit)}), whole process "
            f"{median([r['wall'] for r in rs]):.1f} s wall, CPU/wall {median([r['cpu'] / r['wall'] for r in rs]):.2f}; "
            f"CV: {rs[0]['summary']}"
        )
    before, now = ([sum(f["fit_seconds"] for f in r["folds"]) for r in runs[k]] for k in ("before", "now"))
    out.append(f"- **summed fit time before / now: {median(before) / median(now):.2f}×** (medians, cold caches)")
    return out


def breakdown(runs: dict) -> str:
    """Compilation and per-epoch compute of the compiled run's folds (medians over folds)."""
    compiles, epochs = [], []
    for fold in (f for r in runs["now"] for f in r["folds"]):
        seconds = fold.get("epoch_seconds") or []
        if len(seconds) > 1:
            compiles.append(seconds[0] - median(seconds[1:]))
            epochs.append(median(seconds[1:]))
    if not compiles:
        return ""
    return (
        f"- where a compiled fold's time goes (median over folds): compilation ≈ {median(compiles):.1f} s "
        f"(first epoch − later epochs), then {median(epochs):.2f} s per epoch"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", choices=("jax", "tensorflow"), help="measure one backend only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        subprocess.run(["git", "worktree", "add", "--detach", str(tmp / "before"), BEFORE], cwd=ROOT, check=True)
        try:
            if args.only != "tensorflow":
                data = subset(tmp / "data600", {"NORMAL": 150, "PNEUMONIA": 450})
                runs = compare(tmp, data, JAX_ARGS, {**os.environ, "KERAS_BACKEND": "jax"}, args.reps, "jax")
                record(
                    f"Compiled training under JAX on the CPU: this tree vs {BEFORE}",
                    "python -m tests.perf.compiled  # KERAS_BACKEND=jax benchmark run " + " ".join(JAX_ARGS),
                    [JAX_DATA, "", *lines_for(runs), breakdown(runs)],
                )
            if args.only != "jax":
                runs = compare(tmp, DATA_224, TF_ARGS, {**os.environ, "KERAS_BACKEND": "tensorflow"}, args.reps, "tf")
                record(
                    f"TensorFlow on the CPU: this tree vs {BEFORE}",
                    "python -m tests.perf.compiled  # benchmark run " + " ".join(TF_ARGS),
                    [TF_DATA, "", *lines_for(runs)],
                )
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tmp / "before")], cwd=ROOT, check=False)


JAX_DATA = "600 real images (150 NORMAL, 450 PNEUMONIA), 56 px; interleaved, after one warm-up round:"
TF_DATA = "Full Kaggle train split (5,216 images), 56 px, the default settings; interleaved, after one warm-up round:"

if __name__ == "__main__":
    sys.exit(main())
