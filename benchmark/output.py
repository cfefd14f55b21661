"""Stage 6 — output: the run folder, its files and the leaderboard.

::

    RUN/config.json             every setting, versions, machine, git commit, backend, devices,
                                the data's path and fingerprint
    RUN/files.csv               every image: path (relative to --data), class, size, modification time
    RUN/splits.json             the folds as paths relative to --data
    RUN/<arch>/fold-<i>/        history.csv, predictions.csv, metrics.json, model.keras,
                                test_predictions.csv (the held-out split)
    RUN/<arch>/gradcam.npz      Grad-CAM heat maps of chosen test images (the report's section 8)
    RUN/folds.csv               one row per architecture × fold
    RUN/oof.csv                 out-of-fold probabilities: arch, fold, path, label, probability
    RUN/results.json            the aggregated, ranked results (the contract reports build on)
    RUN/leaderboard.md          the ranked table

A fold's ``metrics.json`` is written last, so its presence marks the fold finished.
"""

from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from benchmark import UsageError
from benchmark.files import read_json, write_bytes, write_csv, write_json, write_text
from benchmark.metrics import METRICS

FILE_COLUMNS = ["path", "class", "size", "mtime_ns"]


def safe_name(name: str) -> str:
    """A file-system-safe folder name for an architecture name.

    >>> safe_name("resnet/v2 (wide)")
    'resnet_v2_wide_'
    """
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).lstrip(".") or "_"


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def splits(self) -> Path:
        return self.path / "splits.json"

    @property
    def files(self) -> Path:
        return self.path / "files.csv"

    def write_files(self, rows: list[tuple]) -> None:
        write_csv(self.files, pd.DataFrame(rows, columns=FILE_COLUMNS))

    def read_files(self) -> list[tuple] | None:
        try:
            return list(pd.read_csv(self.files, keep_default_na=False).itertuples(index=False, name=None))
        except (OSError, ValueError):
            return None

    def arch_dir(self, arch: str) -> Path:
        return self.path / safe_name(arch)

    def fold_dir(self, arch: str, fold: int) -> Path:
        return self.arch_dir(arch) / f"fold-{fold}"

    def model_path(self, arch: str, fold: int) -> Path:
        return self.fold_dir(arch, fold) / "model.keras"

    @contextmanager
    def locked(self):
        """Hold ``.lock`` (this process's pid) while a run writes here. A second run on the same
        folder is refused; a lock left by a process that no longer exists is taken over."""
        lock = self.path / ".lock"
        mine = self.path / f".lock.{os.getpid()}"
        mine.write_text(str(os.getpid()))  # linked into place whole, so a lock is never seen empty
        try:
            while True:
                try:
                    os.link(mine, lock)
                    break
                except FileExistsError:
                    pid = _lock_pid(lock)
                    if pid is not None and _alive(pid):
                        raise UsageError(
                            f"--out {self.path} is in use by another run (pid {pid}). Wait for it to finish, "
                            f"or choose another --out. If no such run exists, delete {lock}."
                        ) from None
                    lock.unlink(missing_ok=True)  # stale: its process is gone
        finally:
            mine.unlink()
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)

    def clear(self) -> None:
        """Remove everything in the folder but the lock (``--overwrite``)."""
        for child in self.path.iterdir():
            if not child.name.startswith(".lock"):
                shutil.rmtree(child) if child.is_dir() else child.unlink()

    def write_fold(
        self, arch: str, fold: int, record: dict, history: dict, predictions: pd.DataFrame, model: bytes | None = None
    ) -> None:
        folder = self.fold_dir(arch, fold)
        if model is not None:
            write_bytes(self.model_path(arch, fold), model)
        frame = pd.DataFrame(history)
        frame.insert(0, "epoch", range(1, len(frame) + 1))
        write_csv(folder / "history.csv", frame)
        write_csv(folder / "predictions.csv", predictions)
        write_json(folder / "metrics.json", record)  # last: marks the fold finished

    def read_fold(self, arch: str, fold: int) -> tuple[dict, dict, pd.DataFrame] | None:
        """(record, history, predictions) of a finished fold, or None when it must be (re)done."""
        folder = self.fold_dir(arch, fold)
        record = read_json(folder / "metrics.json")
        if record is None:
            return None
        try:
            history = pd.read_csv(folder / "history.csv").drop(columns="epoch").to_dict(orient="list")
            predictions = pd.read_csv(folder / "predictions.csv")
        except (OSError, ValueError, KeyError):
            return None
        if len(predictions) != record.get("n_score") or not history.get("val_loss"):
            return None
        return record, history, predictions

    def write_results(
        self, run: dict, entries: list[dict], comparison: dict | None, records: list[dict], oof: pd.DataFrame
    ) -> str:
        """Write folds.csv, oof.csv, results.json and leaderboard.md; return the leaderboard text."""
        write_csv(self.path / "folds.csv", folds_table(records))
        write_csv(self.path / "oof.csv", oof)
        write_json(self.path / "results.json", {"run": run, "architectures": entries, "comparison": comparison})
        text = leaderboard(entries, run["rank_by"])
        if comparison:
            text += "\n\n" + verdict(comparison)
        write_text(self.path / "leaderboard.md", f"# Leaderboard\n\n{run_line(run)}\n\n{text}\n")
        return text


def _lock_pid(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def folds_table(records: list[dict]) -> pd.DataFrame:
    """One row per architecture × fold with every metric and the fold's training facts."""
    rows = []
    for r in records:
        tn, fp = r["metrics"]["confusion_matrix"][0]
        fn, tp = r["metrics"]["confusion_matrix"][1]
        rows.append(
            {
                "arch": r["arch"],
                "fold": r["fold"],
                **{m: r["metrics"][m] for m in METRICS},
                "tn": tn,
                "fp": fp,
                "fn": fn,
                "tp": tp,
                "best_epoch": r["best_epoch"],
                "epochs": r["epochs"],
                "fit_seconds": r["fit_seconds"],
                "predict_seconds": r["predict_seconds"],
                "class_weight_0": r["class_weight"]["0"],
                "class_weight_1": r["class_weight"]["1"],
                "initial_bias": r["initial_bias"],
                "n_fit": r["n_fit"],
                "n_val": r["n_val"],
                "n_score": r["n_score"],
            }
        )
    return pd.DataFrame(rows)


def _pm(metric: dict) -> str:
    return f"{metric['mean']:.3f} ± {metric['std']:.3f}"


def run_line(run: dict) -> str:
    return (
        f"{run['folds']}-fold stratified CV (seed {run['seed']}) on {run['n_images']} images of {run['data']}, "
        f"{run['image_size']} px; ranked by {run['rank_by']}; mean ± std over folds, threshold 0.5."
    )


def ranked_metrics(rank_by: str) -> list[str]:
    """Every metric, the ranking one first."""
    return [rank_by] + [m for m in METRICS if m != rank_by]


CURVE_HEADERS = [
    "architecture",
    "val-loss variance",
    "oscillation",
    "gap at best",
    "best epoch per fold",
    "epochs per fold",
    "suggested patience",
]


def curve_row(entry: dict) -> list:
    """One architecture's loss-curve diagnostics, as the CURVE_HEADERS columns."""
    c = entry["curves"]
    return [
        entry["name"],
        f"{c['val_loss_variance']:.2g}",
        f"{c['oscillation']['mean']:.2f}",
        f"{c['gap']['mean']:+.3f}",
        " ".join(map(str, c["best_epoch"])),
        " ".join(map(str, c["epochs"])),
        c["suggested_patience"],
    ]


def leaderboard(entries: list[dict], rank_by: str) -> str:
    """The ranked table (markdown pipe table), then the loss-curve diagnostics, then failures."""
    shown = ranked_metrics(rank_by)
    scored = [e for e in entries if "metrics" in e]
    rows = [
        [e["rank"] or "-", e["name"] + ("" if e["status"] == "ok" else " (failed)")]
        + [_pm(e["metrics"][m]) for m in shown]
        + [
            f"{e['params']:,}",
            f"{sum(e['curves']['epochs']) / len(e['curves']['epochs']):.1f}",
            f"{sum(e['fit_seconds']) / len(e['fit_seconds']):.0f}",
        ]
        for e in scored
    ]
    table = tabulate(
        rows,
        headers=["rank", "architecture", *shown, "params", "epochs", "fit s/fold"],
        tablefmt="pipe",
        disable_numparse=True,
        colalign=("right", "left", *["right"] * (len(shown) + 3)),
    )
    curves = tabulate(
        [curve_row(e) for e in scored],
        headers=CURVE_HEADERS,
        tablefmt="pipe",
        disable_numparse=True,
        colalign=("left", *["right"] * (len(CURVE_HEADERS) - 1)),
    )
    text = f"{table}\n\nLoss curves (across folds)\n\n{curves}"
    failed = [e for e in entries if e["status"] != "ok"]
    if failed:
        text += "\n\nFailed\n\n" + "\n".join(f"- {e['name']}: {e['error']}" for e in failed)
    return text


def runner_up_verdict(comparison: dict) -> str:
    """The best against the runner-up on the ranking metric, in words."""
    metric, best = comparison["metric"], comparison["best"]
    runner_up, r = next(iter(comparison["best_vs"].items()))
    words = (
        "significant at the 0.05 level."
        if r["p"] < 0.05
        else "not significant at the 0.05 level (with few folds the test has little power)."
    )
    return (
        f"{best} vs the runner-up {runner_up} on {metric}: difference {r['mean_difference']:+.4f} "
        f"(95 % CI {r['ci_low']:+.4f} to {r['ci_high']:+.4f}), Nadeau–Bengio corrected resampled "
        f"t-test p = {r['p']:.3g}: {words}"
    )


def friedman_sentence(comparison: dict) -> str | None:
    """Friedman's test over all architectures in words; None with fewer than three."""
    f = comparison["friedman"]
    if not np.isfinite(f["statistic"]):
        return None
    ranks = ", ".join(f"{n} {v:.1f}" for n, v in sorted(f["average_ranks"].items(), key=lambda kv: kv[1]))
    return (
        f"Friedman test over {len(f['average_ranks'])} architectures: chi² = {f['statistic']:.2f}, "
        f"p = {f['p']:.3g}. Average ranks (1 = best): {ranks}; two ranks differ significantly "
        f"(Nemenyi, 0.05) when more than {f['critical_difference']:.2f} apart."
    )


def verdict(comparison: dict) -> str:
    """The best against the runner-up, and Friedman over all, in words."""
    return "\n\n".join(s for s in (runner_up_verdict(comparison), friedman_sentence(comparison)) if s)
