"""Stage 4 — evaluation: scores of one fold's predictions, and statistics of its loss curves.

Threshold metrics are computed from the confusion matrix at ``threshold``
(0.5 unless said otherwise); ``roc_auc``, ``pr_auc`` (average precision) and
``log_loss`` use the probabilities themselves.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, log_loss, precision_recall_curve, roc_auc_score, roc_curve

METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "pr_auc", "mcc", "log_loss")
LOWER_IS_BETTER = frozenset({"log_loss"})


def confusion(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict[str, int]:
    """Counts ``tn, fp, fn, tp`` with "positive" meaning probability ≥ threshold."""
    y = np.asarray(labels).astype(bool)
    pred = np.asarray(probabilities) >= threshold
    return {
        "tn": int(np.sum(~y & ~pred)),
        "fp": int(np.sum(~y & pred)),
        "fn": int(np.sum(y & ~pred)),
        "tp": int(np.sum(y & pred)),
    }


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0  # scikit-learn's zero_division=0


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Every metric of :data:`METRICS` plus the confusion matrix.

    >>> m = binary_metrics([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.9])
    >>> m["precision"], m["recall"], m["specificity"], m["roc_auc"]
    (0.6666666666666666, 1.0, 0.5, 1.0)
    """
    y = np.asarray(labels).astype(int)
    p = np.asarray(probabilities, dtype=np.float64)
    c = confusion(y, p, threshold)
    values = {**_from_confusion(c), **{m: _ranking_metric(y, p, m) for m in THRESHOLD_FREE}}
    return {
        **{m: values[m] for m in METRICS},
        "confusion_matrix": [[c["tn"], c["fp"]], [c["fn"], c["tp"]]],
        "threshold": threshold,
    }


THRESHOLD_FREE = ("roc_auc", "pr_auc", "log_loss")


def metric_value(labels: np.ndarray, probabilities: np.ndarray, metric: str, threshold: float = 0.5) -> float:
    """One metric of :func:`binary_metrics`, computing only that one (for bootstraps).

    >>> metric_value([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.9], "specificity")
    0.5
    """
    y = np.asarray(labels).astype(int)
    p = np.asarray(probabilities, dtype=np.float64)
    if metric in THRESHOLD_FREE:
        return _ranking_metric(y, p, metric)
    return _from_confusion(confusion(y, p, threshold))[metric]


def _from_confusion(c: dict[str, int]) -> dict[str, float]:
    tn, fp, fn, tp = c["tn"], c["fp"], c["fn"], c["tp"]
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    mcc_den = np.sqrt(float(tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return {
        "accuracy": _ratio(tp + tn, tp + tn + fp + fn),
        "precision": precision,
        "recall": recall,
        "specificity": _ratio(tn, tn + fp),
        "f1": _ratio(2 * precision * recall, precision + recall),
        "mcc": _ratio(tp * tn - fp * fn, mcc_den),
    }


def _ranking_metric(y: np.ndarray, p: np.ndarray, metric: str) -> float:
    if metric == "log_loss":
        return float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1]))
    if not 0 < y.sum() < len(y):  # one class only: undefined
        return float("nan")
    return float(roc_auc_score(y, p) if metric == "roc_auc" else average_precision_score(y, p))


def best_epoch(val_loss: np.ndarray) -> int:
    """0-based epoch of the lowest validation loss (the first one on ties), as EarlyStopping restores."""
    return int(np.argmin(val_loss))


def oscillation_index(val_loss: np.ndarray) -> float:
    """How often the validation loss turns around: the fraction of successive
    differences whose sign differs from the previous one's (0 = monotone,
    1 = up, down, up, down ...). Flat steps are ignored; under 3 epochs → 0.

    >>> oscillation_index([1.0, 0.8, 0.9, 0.7, 0.8])
    1.0
    >>> oscillation_index([1.0, 0.8, 0.7, 0.65])
    0.0
    """
    signs = np.sign(np.diff(np.asarray(val_loss, dtype=float)))
    signs = signs[signs != 0]
    if len(signs) < 2:
        return 0.0
    return float(np.mean(signs[1:] != signs[:-1]))


def longest_wait(val_loss: np.ndarray) -> int:
    """The most epochs in a row without a new minimum of the validation loss that
    were followed by a new minimum (a curve needs patience above this not to be
    stopped too early).

    >>> longest_wait([1.0, 0.9, 0.95, 0.97, 0.96, 0.8, 0.85])
    3
    """
    best, since, longest = np.inf, 0, 0
    for v in val_loss:
        if v < best:
            longest, best, since = max(longest, since), v, 0
        else:
            since += 1
    return longest


def curve_statistics(histories: list[dict[str, list[float]]], patience: int) -> dict:
    """Loss-curve diagnostics of one architecture over its folds.

    ``histories`` holds one dict per fold with ``loss`` and ``val_loss`` per epoch.

    - ``val_loss_variance``: the across-fold variance (ddof=1) of the validation
      loss at each epoch, averaged over the epochs all folds ran;
    - ``oscillation``: :func:`oscillation_index` per fold and its mean;
    - ``gap``: val_loss − loss at the best epoch, per fold and mean (> 0: overfitting);
    - ``best_epoch`` (1-based) and ``epochs`` run, per fold;
    - ``suggested_patience``: the longest :func:`longest_wait` over folds plus one
      (the smallest patience that would have reached every fold's best epoch), at
      least 2. Curves are cut by early stopping, so a suggestion equal to the
      ``patience`` used means a longer one may still pay off.
    """
    val = [np.asarray(h["val_loss"], dtype=float) for h in histories]
    train = [np.asarray(h["loss"], dtype=float) for h in histories]
    common = min(len(v) for v in val)
    stacked = np.stack([v[:common] for v in val])
    variance = float(np.mean(np.var(stacked, axis=0, ddof=1))) if len(val) > 1 else 0.0
    best = [best_epoch(v) for v in val]
    oscillation = [oscillation_index(v) for v in val]
    gap = [float(v[b] - t[b]) for v, t, b in zip(val, train, best, strict=False)]
    waits = [longest_wait(v) for v in val]
    return {
        "val_loss_variance": variance,
        "common_epochs": common,
        "oscillation": {"mean": float(np.mean(oscillation)), "folds": oscillation},
        "gap": {"mean": float(np.mean(gap)), "folds": gap},
        "best_epoch": [b + 1 for b in best],
        "epochs": [len(v) for v in val],
        "longest_wait": waits,
        "suggested_patience": max(2, max(waits) + 1),
        "patience": patience,
    }


def max_f1_threshold(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The probability threshold with the highest F1 (ties: the lowest threshold).

    Chosen on out-of-fold predictions, it is then applied unchanged to held-out images.

    >>> max_f1_threshold([0, 0, 1, 1, 1], [0.1, 0.6, 0.4, 0.7, 0.9])
    0.4
    """
    precision, recall, thresholds = precision_recall_curve(labels, probabilities)  # positive if p ≥ threshold
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return float(thresholds[int(np.argmax(f1))])


def youden_threshold(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The threshold with the highest sensitivity + specificity − 1 (Youden's J).

    Unlike F1, J does not depend on the share of positives, so a threshold chosen
    where PNEUMONIA is 74 % of images still means the same where it is 62 %.

    >>> youden_threshold([0, 0, 1, 1, 1], [0.1, 0.6, 0.4, 0.7, 0.9])
    0.7
    """
    fpr, tpr, thresholds = roc_curve(labels, probabilities)  # positive if p ≥ threshold
    return float(thresholds[int(np.argmax(tpr - fpr))])


def oof_thresholds(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """The report's thresholds: 0.5 and the two rules chosen on out-of-fold predictions.

    >>> oof_thresholds([0, 0, 1, 1, 1], [0.1, 0.6, 0.4, 0.7, 0.9])
    {'0.5': 0.5, 'max F1': 0.4, 'Youden': 0.7}
    """
    return {
        "0.5": 0.5,
        "max F1": max_f1_threshold(labels, probabilities),
        "Youden": youden_threshold(labels, probabilities),
    }
