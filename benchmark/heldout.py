"""Stage 4 — evaluation, held out: the saved fold models score the official test split, once.

It runs after cross-validation and feeds nothing back: models, early stopping,
thresholds and the ranking never see the test images. The probabilities are saved
per fold (``<arch>/fold-<i>/test_predictions.csv``) for the report to aggregate.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

from benchmark.data import Images
from benchmark.files import write_csv
from benchmark.metrics import LOWER_IS_BETTER, metric_value, probabilities_of, probability_columns
from benchmark.runfolder import RunFolder
from benchmark.statistics import bootstrap_difference, holm


def predict_heldout(
    folder: RunFolder,
    names: list[str],
    n_folds: int,
    test: Images,
    batch_size: int,
    log: Callable = print,
    tta: bool = False,
) -> int:
    """Predict ``test`` with every saved fold model whose test predictions are missing; return how many ran.

    ``probability`` (or ``probability_<label>`` per class) is the model's output on the image;
    with ``tta``, ``probability_tta`` (``probability_tta_<label>``) is its mean over :func:`tta_views`
    too (a file without it is redone).
    """
    from benchmark.training import load_fold_model  # here, so that reading saved predictions needs no backend

    done = 0
    for name in names:
        for i in range(n_folds):
            out, model_path = folder.test_predictions(name, i), folder.model_path(name, i)
            has_tta = any(c.startswith("probability_tta") for c in _columns(out))
            if not model_path.exists() or (out.exists() and (not tta or has_tta)):
                continue
            model = load_fold_model(model_path)

            def predict(pixels, model=model):
                p = np.asarray(model.predict(pixels, batch_size=max(batch_size, 128), verbose=0))
                return p.reshape(-1) if p.shape[1] == 1 else p

            columns = {
                "path": test.paths,
                "label": test.labels.astype(int),
                **probability_columns(predict(test.pixels)),
            }
            if tta:
                views = np.mean([predict(view) for view in tta_views(test.pixels)], axis=0)
                columns |= probability_columns(views, "probability_tta")
            write_csv(out, pd.DataFrame(columns))
            done += 1
    if done:
        log(f"held-out test split: {done} fold model(s) scored {len(test.paths)} images" + (" (+ TTA)" if tta else ""))
    return done


def tta_views(pixels: np.ndarray, fraction: float = 0.04) -> list[np.ndarray]:
    """The image and four copies shifted by ``fraction`` of its size up, down, left and right
    (edges repeated): the translations training augmentation already showed the model.

    >>> views = tta_views(np.arange(25, dtype=np.uint8).reshape(1, 5, 5, 1), fraction=0.2)
    >>> len(views), views[1][0, :, :, 0].tolist()[0]
    (5, [5, 6, 7, 8, 9])
    """
    size = pixels.shape[1]
    k = max(1, round(fraction * size))
    padded = np.pad(pixels, ((0, 0), (k, k), (k, k), (0, 0)), mode="edge")
    crops = [(k, k), (2 * k, k), (0, k), (k, 2 * k), (k, 0)]  # (row, col) offsets: same, up, down, left, right
    return [padded[:, r : r + size, c : c + pixels.shape[2]] for r, c in crops]


def _columns(path) -> list[str]:
    try:
        return list(pd.read_csv(path, nrows=0).columns)
    except (OSError, ValueError):
        return []


def read_heldout(folder: RunFolder, name: str, n_folds: int) -> list[pd.DataFrame] | None:
    """Every fold's test predictions of ``name``, or None unless all ``n_folds`` are saved."""
    paths = [folder.test_predictions(name, i) for i in range(n_folds)]
    if not all(p.exists() for p in paths):
        return None
    return [pd.read_csv(p) for p in paths]


def fold_ensemble(runs: list[pd.DataFrame], column: str = "probability") -> np.ndarray:
    """The fold ensemble's test probabilities: the mean over the fold models of ``column`` ((n,) or (n, K))."""
    return np.mean([probabilities_of(r, column) for r in runs], axis=0)


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
    sign = -1 if metric in LOWER_IS_BETTER else 1
    cv_scores = np.array([cv[n] for n in names])
    test_scores = np.array([metric_value(labels, test[n], metric) for n in names])
    tau, rho = _correlations(cv_scores, test_scores)
    rng = np.random.default_rng(seed)
    resampled = []  # n_boot × architectures: every architecture scored on the same resample
    for _ in range(n_boot):
        idx = rng.integers(0, len(labels), len(labels))
        resampled.append([_quick(labels[idx], test[n][idx], metric) for n in names])
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
    :func:`~benchmark.statistics.bootstrap_difference`; ``p_holm`` is Holm's adjustment over the
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


def heldout_transfer(folder: RunFolder, entries: list[dict], n_folds: int, metric: str) -> dict | None:
    """:func:`ranking_transfer` of the ranked ``entries`` that have held-out predictions (None below two)."""
    cv, test, labels = {}, {}, None
    for e in entries:
        runs = read_heldout(folder, e["name"], n_folds) if e["status"] == "ok" else None
        if runs is not None:
            cv[e["name"]], test[e["name"]] = e["metrics"][metric]["mean"], fold_ensemble(runs)
            labels = runs[0].label.to_numpy()
    return ranking_transfer(cv, test, labels, metric) if len(cv) >= 2 else None


def _quick(labels: np.ndarray, probabilities: np.ndarray, metric: str) -> float:
    """:func:`metric_value`, with ROC-AUC and average precision from one sort instead of scikit-learn's
    general code (the same formulas; 30× faster, for the bootstrap).

    >>> y, p = np.array([0, 1, 1, 0, 1]), np.array([0.1, 0.8, 0.3, 0.3, 0.9])
    >>> [round(_quick(y, p, m), 6) == round(metric_value(y, p, m), 6) for m in ("roc_auc", "pr_auc")]
    [True, True]
    """
    if metric not in ("roc_auc", "pr_auc") or probabilities.ndim == 2 or not 0 < labels.sum() < len(labels):
        return metric_value(labels, probabilities, metric)
    order = np.argsort(-probabilities, kind="mergesort")
    y, p = labels[order], probabilities[order]
    last = np.r_[np.flatnonzero(np.diff(p)), len(p) - 1]  # the last image at each distinct threshold
    tps = np.cumsum(y)[last]
    fps = last + 1 - tps
    recall = tps / tps[-1]
    if metric == "pr_auc":
        return float(np.sum(np.diff(np.r_[0.0, recall]) * tps / (tps + fps)))
    return float(np.trapezoid(np.r_[0.0, recall], np.r_[0.0, fps / fps[-1]]))


def _percentiles(values: np.ndarray) -> list[float]:
    """The 95 % percentile interval of the finite ``values`` (NaN, NaN where none is: every resample tied)."""
    finite = values[np.isfinite(values)]
    return np.percentile(finite, [2.5, 97.5]).tolist() if len(finite) else [float("nan"), float("nan")]


def _correlations(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    if len(a) < 2 or np.ptp(b) == 0 or np.ptp(a) == 0:
        return float("nan"), float("nan")
    return float(stats.kendalltau(a, b).statistic), float(stats.spearmanr(a, b).statistic)
