"""Evaluation: aggregate each architecture's folds, rank the architectures, compare them.

Input is the per-fold records exactly as saved in ``<arch>/fold-<i>/metrics.json``
and ``history.csv``, so every aggregated number can be recomputed from those files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from benchmark.evaluation.metrics import better, clip_to_range, curve_statistics, metric_names
from benchmark.evaluation.statistics import bayesian_correlated_ttest, corrected_ttest, friedman, holm, mean_ci
from benchmark.evaluation.tuning import tuning_summary
from benchmark.store.results import ArchResult, Status


@dataclass
class ArchOutcome:
    """What a run produced for one architecture: its fold records, or the error that stopped it."""

    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    folds: list[dict] = field(default_factory=list)  # metrics.json records, in fold order
    histories: list[dict[str, list[float]]] = field(default_factory=list)
    predictions: pd.DataFrame | None = None  # out-of-fold probabilities (oof.csv rows)
    error: str | None = None


def mean_std(values: list[float]) -> dict:
    """Mean, sample standard deviation (ddof=1) and the values themselves.

    >>> mean_std([0.8, 0.9, 1.0])
    {'mean': 0.9, 'std': 0.09999999999999998, 'folds': [0.8, 0.9, 1.0]}
    """
    arr = np.asarray(values, dtype=float)
    std = float(np.nanstd(arr, ddof=1)) if np.sum(np.isfinite(arr)) > 1 else 0.0
    return {
        "mean": float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan"),
        "std": std,
        "folds": list(values),
    }


def summary(values: list[float], test_fraction: float, metric: str) -> dict:
    """:func:`mean_std` with the corrected 95 % interval of the mean (``ci``), clipped to the metric's range.

    >>> [round(v, 4) for v in summary([0.8, 0.9, 1.0], 0.25, "f1")["ci"]]
    [0.5714, 1.0]
    """
    _, low, high = mean_ci(values, test_fraction)
    return {**mean_std(values), "ci": list(clip_to_range(metric, low, high))}


def summarise(outcome: ArchOutcome, patience: int) -> dict:
    """The ``results.json`` entry of one architecture (without its rank)."""
    entry = {
        "name": outcome.name,
        "rank": None,
        "status": Status.FAILED if outcome.error else Status.OK,
        "params": outcome.folds[0]["params"] if outcome.folds else None,
        "description": outcome.description,
        "tags": list(outcome.tags),
        "folds_done": len(outcome.folds),
    }
    if outcome.error:
        entry["error"] = outcome.error
    if outcome.folds:
        names = metric_names(len(outcome.folds[0]["class_weight"]))  # one weight per class
        ratio = float(np.mean([f["n_score"] / f["n_fit"] for f in outcome.folds]))
        entry["metrics"] = {m: summary([f["metrics"][m] for f in outcome.folds], ratio, m) for m in names}
        entry["confusion_matrix"] = np.sum([f["metrics"]["confusion_matrix"] for f in outcome.folds], axis=0).tolist()
        entry["curves"] = curve_statistics(outcome.histories, patience)
        entry["test_fraction"] = ratio
        entry["fit_seconds"] = [f["fit_seconds"] for f in outcome.folds]
        entry["predict_seconds"] = [f["predict_seconds"] for f in outcome.folds]
        if tuning := tuning_summary(outcome.folds):
            entry["tuning"] = tuning
    return entry


def rank(entries: list[dict], rank_by: str) -> list[dict]:
    """Sort by the mean of ``rank_by`` (ascending for losses), ties by lower std; failed ones last, unranked."""

    def key(entry):
        m = entry["metrics"][rank_by]
        return (-better(rank_by) * m["mean"] if np.isfinite(m["mean"]) else np.inf, m["std"])

    ok = sorted((e for e in entries if e["status"] == Status.OK), key=key)
    failed = [e for e in entries if e["status"] != Status.OK]
    for i, entry in enumerate(ok, start=1):
        entry["rank"] = i
    return ok + failed


def ranked(outcomes: list[ArchOutcome], rank_by: str, patience: int) -> list[dict]:
    """The ``results.json`` entries of ``outcomes``, ranked."""
    return rank([summarise(o, patience) for o in outcomes], rank_by)


def pairwise_comparison(entries: list[dict], records: list[dict], metric: str, repeats: int = 1) -> dict | None:
    """Statistics on ``metric`` between the ranked architectures (None with fewer than two).

    Corrected t-tests of the best against each other and of every pair, with ``n_test / n_train``
    from the saved fold sizes (Nadeau–Bengio; over the folds of all ``repeats``, Bouckaert–Frank)
    and Holm's adjustment over all pairs; Friedman's test with average ranks and the Nemenyi
    critical difference (descriptive: folds of one data set are not independent blocks); the
    Bayesian correlated t-test of the best against each other, with the t-tests' correction.
    """
    ok = [e for e in entries if e["status"] == Status.OK]  # in rank order
    if len(ok) < 2:
        return None
    folds = {e["name"]: e["metrics"][metric]["folds"] for e in ok}
    ratio = float(np.mean([r["n_score"] / r["n_fit"] for r in records]))
    best = ok[0]["name"]
    higher = better(metric) > 0
    p = {a: {b: corrected_ttest(folds[a], folds[b], ratio).p for b in folds if b != a} for a in folds}
    adjusted = holm({(a, b): p[a][b] for a in folds for b in folds if a < b})
    return {
        "metric": metric,
        "test_fraction": ratio,
        "repeats": repeats,
        "test": TESTS[repeats > 1],
        "best": best,
        "best_vs": {b: asdict(corrected_ttest(folds[best], folds[b], ratio)) for b in folds if b != best},
        "p_values": p,
        "p_values_holm": {a: {b: adjusted[tuple(sorted((a, b)))] for b in folds if b != a} for a in folds},
        "friedman": asdict(friedman(folds, higher_is_better=higher)),
        "bayesian": {
            b: asdict(bayesian_correlated_ttest(folds[best], folds[b], ratio, higher_is_better=higher))
            for b in folds
            if b != best
        },
    }


TESTS = {
    False: "Nadeau–Bengio corrected resampled t-test",
    True: "Bouckaert–Frank corrected repeated k-fold t-test",
}


def ranking_change(base: dict[str, float], other: dict[str, float], metric: str) -> dict:
    """Whether two runs rank the same architectures alike: each run's order and winner on ``metric`` (CV
    means, name → mean) and Kendall's τ between the two (NaN where either run ties them all).

    >>> r = ranking_change({"a": 0.9, "b": 0.8, "c": 0.7}, {"a": 0.7, "b": 0.9, "c": 0.6}, "f1")
    >>> r["order"], round(r["kendall_tau"], 3), r["same_winner"]
    ([['a', 'b', 'c'], ['b', 'a', 'c']], 0.333, False)
    """
    names = list(base)
    orders = [sorted(names, key=lambda n, run=run: -better(metric) * run[n]) for run in (base, other)]
    a, b = np.array([base[n] for n in names]), np.array([other[n] for n in names])
    tau = float(stats.kendalltau(a, b).statistic) if len(names) > 1 and np.ptp(a) and np.ptp(b) else float("nan")
    return {"order": orders, "kendall_tau": tau, "same_winner": orders[0][0] == orders[1][0]}


def folds_table(records: list[dict]) -> pd.DataFrame:
    """One row per architecture × fold with every metric and the fold's training facts."""
    rows = []
    for r in records:
        matrix = r["metrics"]["confusion_matrix"]
        counts = dict(zip(("tn", "fp", "fn", "tp"), (*matrix[0], *matrix[1]), strict=True)) if len(matrix) == 2 else {}
        rows.append(
            {
                "arch": r["arch"],
                "fold": r["fold"],
                **{m: r["metrics"][m] for m in metric_names(len(r["class_weight"]))},
                **counts,
                "best_epoch": r["best_epoch"],
                "epochs": r["epochs"],
                "fit_seconds": r["fit_seconds"],
                "predict_seconds": r["predict_seconds"],
                **{f"class_weight_{c}": w for c, w in r["class_weight"].items()},
                "initial_bias": r["initial_bias"],
                "n_fit": r["n_fit"],
                "n_val": r["n_val"],
                "n_score": r["n_score"],
                **tuned_columns(r),
            }
        )
    return pd.DataFrame(rows)


def tuned_columns(record: dict) -> dict:
    """A tuned fold's chosen trial and its settings (``tuned_<name>``) as folds.csv columns; none untuned."""
    if "tuning" not in record:
        return {}
    return {"trial": record["tuning"]["chosen"], **{f"tuned_{k}": v for k, v in record["tuning"]["values"].items()}}


def best_fold(entry: ArchResult, rank_by: str) -> int:
    """The fold whose model scored best on its own score fold (the first of equals).

    >>> from benchmark.store.results import Summary
    >>> best_fold(ArchResult("a", 1, Status.OK, metrics={"f1": Summary(0.9, 0.1, [0.8, 0.9, 0.9], (0, 1))}), "f1")
    1
    """
    folds = entry.metrics[rank_by].folds
    return max(range(len(folds)), key=lambda i: better(rank_by) * folds[i])
