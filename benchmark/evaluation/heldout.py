"""Evaluation, held out: does the cross-validation ranking hold on the official test split?

Reads the fold models' test predictions (:mod:`benchmark.inference.predict`); feeds nothing back:
models, early stopping, thresholds and the ranking never see the test images.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from benchmark.evaluation.metrics import (
    better,
    binary_metrics,
    confusion,
    decision_metrics,
    fast_ranking,
    fold_metrics,
    image_log_loss,
    matrix_metrics,
    metric_value,
    multiclass_confusion,
    multiclass_metrics,
    oof_thresholds,
)
from benchmark.evaluation.statistics import bootstrap_difference, holm
from benchmark.inference.predict import fold_ensemble, read_heldout
from benchmark.store.results import Status
from benchmark.store.runfolder import RunFolder, probabilities_of

ALPHA = 0.05  # the family-wise level of the paired tests against the CV winner


def ranking_transfer(
    cv: dict[str, float],
    test: dict[str, np.ndarray],
    labels: np.ndarray,
    metric: str,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = ALPHA,
) -> dict:
    """Does the cross-validation ranking hold on the held-out split?

    ``cv``: each architecture's CV mean of ``metric``; ``test``: its fold ensemble's held-out
    probabilities, over images with ``labels``. Kendall's τ and Spearman's ρ between the CV and
    the test scores, each with a percentile interval from ``n_boot`` bootstrap resamples of the
    test images (the same resample for every architecture); each architecture's gap; each other
    architecture against the CV winner on the same images (``paired``: :func:`paired_against`); and a
    verdict that claims only what the test split shows:

    - ``disagree``: τ's interval lies below 0, or another architecture beats the CV winner (Holm p < ``alpha``);
    - ``agree``: τ's interval lies above 0 and none beats the CV winner;
    - ``unresolved``: neither — the test split is too small or too noisy to tell (a different winner
      on the test split, or τ ≤ 0, is not evidence by itself);
    - ``tied``: every architecture scores the same on the test split, or in CV, so τ is undefined.

    >>> labels = np.array([0, 0, 1, 1] * 10)
    >>> good, bad = np.tile([0.2, 0.3, 0.7, 0.8], 10), np.tile([0.4, 0.6, 0.4, 0.6], 10)
    >>> r = ranking_transfer({"a": 0.9, "b": 0.5}, {"a": good, "b": bad}, labels, "accuracy", n_boot=50)
    >>> r["kendall_tau"], r["same_winner"], r["verdict"], r["paired"][0]["difference"]
    (1.0, True, 'agree', -0.5)
    >>> ranking_transfer({"a": 0.9, "b": 0.5}, {"a": good, "b": good}, labels, "accuracy", n_boot=50)["verdict"]
    'tied'
    """
    names = list(cv)
    sign = better(metric)
    cv_scores = np.array([cv[n] for n in names])
    test_scores = np.array([metric_value(labels, test[n], metric) for n in names])
    tau, rho = _correlations(cv_scores, test_scores)
    rng = np.random.default_rng(seed)
    resampled = []  # n_boot × architectures: every architecture scored on the same resample
    for _ in range(n_boot):
        idx = rng.integers(0, len(labels), len(labels))
        resampled.append([fast_ranking(labels[idx], test[n][idx], metric) for n in names])
    resampled = np.array(resampled)
    boot = np.array([_correlations(cv_scores, row) for row in resampled])
    tau_ci, rho_ci = (_percentiles(boot[:, i]) for i in (0, 1))
    winner, test_winner = int(np.argmax(sign * cv_scores)), int(np.argmax(sign * test_scores))
    paired = paired_against(names, winner, test_scores, resampled, sign, alpha)
    return {
        "metric": metric,
        "architectures": names,
        "cv": cv_scores.tolist(),
        "test": test_scores.tolist(),
        "gap": (test_scores - cv_scores).tolist(),
        "kendall_tau": tau,
        "kendall_tau_ci": tau_ci,
        "spearman_rho": rho,
        "spearman_rho_ci": rho_ci,
        "n_boot": n_boot,
        "cv_winner": names[winner],
        "test_winner": names[test_winner],
        "same_winner": winner == test_winner,
        "alpha": alpha,
        "paired": paired,
        "verdict": transfer_verdict(tau, tau_ci, paired),
    }


def paired_against(
    names: list[str], winner: int, scores: np.ndarray, resampled: np.ndarray, sign: int, alpha: float = ALPHA
) -> list[dict]:
    """Each other architecture against the CV winner ``names[winner]`` on the same test images.

    ``difference`` is its test score minus the winner's; ``ci`` and ``p`` come from the bootstrap
    replicates of that difference (``resampled``: resamples × architectures, the same resamples as τ's),
    :func:`~benchmark.evaluation.statistics.bootstrap_difference`; ``p_holm`` is Holm's adjustment over the
    comparisons; ``beats_cv_winner`` where ``p_holm < alpha`` and the difference is in its favour
    (``sign`` −1 where lower is better).
    """
    rows = {}
    for i, name in enumerate(names):
        if i != winner:
            low, high, p = bootstrap_difference(resampled[:, i] - resampled[:, winner])
            rows[name] = {"difference": float(scores[i] - scores[winner]), "ci": [low, high], "p": p}
    adjusted = holm({n: r["p"] for n, r in rows.items()})
    return [
        {
            "architecture": n,
            **r,
            "p_holm": adjusted[n],
            "beats_cv_winner": bool(adjusted[n] < alpha and sign * r["difference"] > 0),
        }
        for n, r in rows.items()
    ]


def transfer_verdict(tau: float, tau_ci: list[float], paired: list[dict]) -> str:
    """``tied``, ``disagree``, ``agree`` or ``unresolved``, as :func:`ranking_transfer` defines them."""
    if np.isnan(tau):  # every architecture scores the same on one side: τ is undefined, the order untestable
        return "tied"
    if tau_ci[1] < 0 or any(c["beats_cv_winner"] for c in paired):
        return "disagree"
    return "agree" if tau_ci[0] > 0 else "unresolved"


def refit_against_folds(
    labels: np.ndarray, refit: np.ndarray, folds: np.ndarray, metric: str, n_boot: int = 1000, seed: int = 0
) -> dict:
    """Which to ship: the refit's ``metric`` (at 0.5, or argmax) minus the fold ensemble's on the same held-out
    images, with the paired bootstrap's 95 % interval and p (:func:`bootstrap_difference`), and ``better``: the
    one whose lead the interval shows, or ``cannot tell`` where it holds 0.

    >>> y = np.array([0, 1] * 50)
    >>> r = refit_against_folds(y, np.where(y == 1, 0.9, 0.1), np.full(100, 0.6), "accuracy", n_boot=100)
    >>> r["difference"], r["better"]
    (0.5, 'refit')
    >>> refit_against_folds(y, np.full(100, 0.6), np.full(100, 0.6), "accuracy", n_boot=100)["better"]
    'cannot tell'
    """
    rng = np.random.default_rng(seed)
    replicates = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(labels), len(labels))
        replicates.append(fast_ranking(labels[idx], refit[idx], metric) - fast_ranking(labels[idx], folds[idx], metric))
    low, high, p = bootstrap_difference(replicates)
    difference = metric_value(labels, refit, metric) - metric_value(labels, folds, metric)
    lead = "refit" if better(metric) * difference > 0 else "fold ensemble"
    return {
        "metric": metric,
        "refit": metric_value(labels, refit, metric),
        "folds": metric_value(labels, folds, metric),
        "difference": difference,
        "ci": [low, high],
        "p": p,
        "n_boot": n_boot,
        "better": "cannot tell" if not low > 0 and not high < 0 else lead,
    }


def read_all(folder: RunFolder, entries: list[dict], n_folds: int) -> dict[str, list[pd.DataFrame]]:
    """Every finished architecture's saved test predictions (those with all ``n_folds``), in ``entries``' order:
    read once for :func:`heldout_transfer` and :func:`heldout_scores`."""
    found = {e["name"]: read_heldout(folder, e["name"], n_folds) for e in entries if e["status"] == Status.OK}
    return {name: runs for name, runs in found.items() if runs is not None}


def heldout_transfer(heldout: dict[str, list[pd.DataFrame]], cv: dict[str, float], metric: str) -> dict | None:
    """:func:`ranking_transfer` of the architectures of ``cv`` (name → CV mean of ``metric``, in rank order) that
    have held-out predictions (:func:`read_all`); None below two."""
    scored = {name: mean for name, mean in cv.items() if name in heldout}
    if len(scored) < 2:
        return None
    labels = heldout[next(iter(scored))][0].label.to_numpy()
    return ranking_transfer(scored, {n: fold_ensemble(heldout[n]) for n in scored}, labels, metric)


def cv_means(entries: list[dict], metric: str) -> dict[str, float]:
    """Each finished entry's (results.json's) CV mean of ``metric``, in rank order."""
    return {e["name"]: e["metrics"][metric]["mean"] for e in entries if e["status"] == Status.OK}


def _percentiles(values: np.ndarray) -> list[float]:
    """The 95 % percentile interval of the finite ``values`` (NaN, NaN where none is: every resample tied)."""
    finite = values[np.isfinite(values)]
    return np.percentile(finite, [2.5, 97.5]).tolist() if len(finite) else [float("nan"), float("nan")]


def _correlations(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    if len(a) < 2 or np.ptp(b) == 0 or np.ptp(a) == 0:
        return float("nan"), float("nan")
    return float(stats.kendalltau(a, b).statistic), float(stats.spearmanr(a, b).statistic)


def bootstrap_intervals(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float | None, n_boot: int = 1000, seed: int = 0
) -> dict[str, list[float]]:
    """Each metric's 95 % percentile interval over ``n_boot`` resamples of the images (the same resamples for
    every metric): of the decision at ``threshold`` for two classes, argmax for (n, K) probabilities.

    >>> y = np.array([0, 1] * 50)
    >>> ci = bootstrap_intervals(y, np.where(y == 1, 0.8, 0.3) + np.tile([0, 0, 0.3, 0], 25), 0.5, n_boot=200)
    >>> [round(v, 2) for v in ci["recall"]], ci["precision"][0] < 2 / 3 < ci["precision"][1], ci["roc_auc"]
    ([1.0, 1.0], True, [1.0, 1.0])
    """
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(labels), (n_boot, len(labels)))
    y = np.asarray(labels).astype(int)
    losses = image_log_loss(y, probabilities)[idx].mean(axis=1)
    if probabilities.ndim == 1:  # every resample at once from its counts
        truth, positive = y[idx].astype(bool), (probabilities >= threshold)[idx]
        counts = [(~truth & ~positive), (~truth & positive), (truth & ~positive), (truth & positive)]
        values = decision_metrics(*(c.sum(axis=1) for c in counts))
    else:
        rows = [matrix_metrics(multiclass_confusion(y[i], probabilities[i])) for i in idx]
        values = {m: np.array([r[m] for r in rows]) for m in rows[0]}
    for metric in ("roc_auc", "pr_auc"):
        values[metric] = np.array([fast_ranking(y[i], probabilities[i], metric) for i in idx])
    return {m: _percentiles(np.asarray(v)) for m, v in {**values, "log_loss": losses}.items()}


def heldout_scores(heldout: dict[str, list[pd.DataFrame]], oof: pd.DataFrame) -> dict[str, dict]:
    """Each architecture's numbers on the held-out split, from its saved test predictions (:func:`read_all`):

    - ``ensemble``: the fold ensemble at each decision rule, ``{"rule", "threshold", "tta", "metrics", "ci"}``
      (``ci``: each metric's 95 % bootstrap interval over the test images, :func:`bootstrap_intervals`):
      with two classes at 0.5 and at the thresholds :func:`oof_thresholds` chose on the architecture's
      out-of-fold predictions (never on the test split), with more classes by argmax; the same rows
      again for the TTA probabilities where ``--tta`` saved them. The first row is the plain decision.
    - ``folds``: each fold model alone, at 0.5 or argmax.
    """
    scores = {}
    for name, runs in heldout.items():
        labels, binary = runs[0].label.to_numpy(), probabilities_of(runs[0]).ndim == 1
        part = oof[oof.arch == name]
        rules = oof_thresholds(part.label, part.probability) if binary else {"argmax": None}
        rows = []
        for column in ("probability", "probability_tta"):
            if column not in runs[0] and f"{column}_0" not in runs[0]:  # (n,) or one column per class
                continue
            probabilities = fold_ensemble(runs, column)
            for rule, t in rules.items():
                metrics = binary_metrics(labels, probabilities, t) if binary else fold_metrics(labels, probabilities)
                row = {"rule": rule, "threshold": t, "tta": column != "probability", "metrics": metrics}
                rows.append({**row, "ci": bootstrap_intervals(labels, probabilities, t)})
        scores[name] = {"ensemble": rows, "folds": [fold_metrics(labels, probabilities_of(r)) for r in runs]}
    return scores


def oof_scores(oof: pd.DataFrame, names: list[str]) -> dict[str, dict]:
    """Each architecture's out-of-fold decisions: with two classes the confusion matrix at 0.5 and at the
    thresholds chosen on these predictions (``thresholds``); with more, :func:`multiclass_metrics` (argmax)."""
    scores = {}
    for name in names:
        part = oof[oof.arch == name]
        if part.empty:
            continue
        probabilities = probabilities_of(part)
        if probabilities.ndim == 1:
            rules = oof_thresholds(part.label, probabilities)
            scores[name] = {"thresholds": [{"rule": rule, "threshold": t, **confusion(part.label, probabilities, t)}
                                           for rule, t in rules.items()]}  # fmt: skip
        else:
            scores[name] = {"classes": multiclass_metrics(part.label.to_numpy(), probabilities)}
    return scores
