"""Evaluation: scores of one fold's predictions, and statistics of its loss curves.

Threshold metrics are computed from the confusion matrix at ``threshold``
(0.5 unless said otherwise); ``roc_auc``, ``pr_auc`` (average precision) and
``log_loss`` use the probabilities themselves.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, log_loss, precision_recall_curve, roc_auc_score, roc_curve

METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "pr_auc", "mcc", "log_loss")
# More than two classes: decisions by argmax; ROC-AUC and PR-AUC one-vs-rest, macro-averaged.
MULTICLASS_METRICS = (
    "accuracy", "balanced_accuracy", "f1_macro", "f1_weighted", "roc_auc", "pr_auc", "mcc", "log_loss",
)  # fmt: skip
PER_CLASS = ("precision", "recall", "specificity", "f1")  # of each class against the rest
ALL_METRICS = tuple(dict.fromkeys(METRICS + MULTICLASS_METRICS))
LOWER_IS_BETTER = frozenset({"log_loss"})


def better(metric: str) -> int:
    """+1 where a higher ``metric`` is better, −1 where a lower one is (log loss): ``better(m) * value`` orders
    scores best-last, whatever the metric.

    >>> better("f1"), better("log_loss")
    (1, -1)
    """
    return -1 if metric in LOWER_IS_BETTER else 1


RANGES = {"mcc": (-1.0, 1.0), "log_loss": (0.0, float("inf"))}  # the others lie in [0, 1]


def clip_to_range(metric: str, low: float, high: float) -> tuple[float, float]:
    """An interval cut to the values ``metric`` can take (a t-interval can overshoot them).

    >>> clip_to_range("f1", -0.2, 1.3), clip_to_range("mcc", -1.5, 0.4)
    ((0.0, 1.0), (-1.0, 0.4))
    """
    low_bound, high_bound = RANGES.get(metric, (0.0, 1.0))
    return max(low, low_bound), min(high, high_bound)


def metric_names(n_classes: int) -> tuple[str, ...]:
    """The metrics of a task with ``n_classes`` classes (the leaderboard's columns, ``--rank-by``'s choices)."""
    return METRICS if n_classes == 2 else MULTICLASS_METRICS


def default_rank_by(n_classes: int) -> str:
    return "f1" if n_classes == 2 else "f1_macro"


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


def _ratio(num, den):
    """num / den, 0 where den is 0 (scikit-learn's zero_division=0); numbers or arrays of them."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


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
    """One metric of :func:`binary_metrics` (or, for (n, K) probabilities, of :func:`multiclass_metrics`).

    >>> metric_value([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.9], "specificity")
    0.5
    """
    y = np.asarray(labels).astype(int)
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim == 2:
        return (
            _multiclass_ranking(y, p, metric)
            if metric in THRESHOLD_FREE
            else matrix_metrics(multiclass_confusion(y, p))[metric]
        )
    if metric in THRESHOLD_FREE:
        return _ranking_metric(y, p, metric)
    return _from_confusion(confusion(y, p, threshold))[metric]


def _from_confusion(c: dict[str, int]) -> dict[str, float]:
    return {m: float(v) for m, v in decision_metrics(c["tn"], c["fp"], c["fn"], c["tp"]).items()}


def decision_metrics(tn, fp, fn, tp) -> dict[str, np.ndarray]:
    """The metrics of a two-class decision from its counts; arrays of counts give arrays (the bootstrap's
    resamples at once).

    >>> decision_metrics(np.array([3, 1]), np.array([1, 0]), np.array([0, 2]), np.array([4, 1]))["recall"].tolist()
    [1.0, 0.3333333333333333]
    """
    tn, fp, fn, tp = (np.asarray(v, dtype=np.float64) for v in (tn, fp, fn, tp))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {
        "accuracy": _ratio(tp + tn, tp + tn + fp + fn),
        "precision": precision,
        "recall": recall,
        "specificity": _ratio(tn, tn + fp),
        "f1": _ratio(2 * precision * recall, precision + recall),
        "mcc": _ratio(tp * tn - fp * fn, np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))),
    }


def image_log_loss(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Each image's log loss, clipped and (K classes) renormalised as :func:`metric_value`'s; their mean is it.

    >>> y, p = np.array([0, 1, 1]), np.array([0.2, 0.7, 1.0])
    >>> bool(np.isclose(image_log_loss(y, p).mean(), metric_value(y, p, "log_loss")))
    True
    """
    y, p = np.asarray(labels).astype(int), np.asarray(probabilities, dtype=np.float64)
    if p.ndim == 1:
        p = np.clip(p, 1e-7, 1 - 1e-7)
        return -(y * np.log(p) + (1 - y) * np.log(1 - p))
    q = np.clip(p, 1e-7, 1)
    return -np.log((q / q.sum(axis=1, keepdims=True))[np.arange(len(y)), y])


def _ranking_metric(y: np.ndarray, p: np.ndarray, metric: str) -> float:
    if metric == "log_loss":
        return float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1]))
    if not 0 < y.sum() < len(y):  # one class only: undefined
        return float("nan")
    return float(roc_auc_score(y, p) if metric == "roc_auc" else average_precision_score(y, p))


def multiclass_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """Every metric of :data:`MULTICLASS_METRICS` for K-class ``probabilities`` (n, K), each class's
    :data:`PER_CLASS` metrics against the rest (``per_class``, keyed by label) and the K×K confusion
    matrix (rows: true class, columns: predicted).

    >>> m = multiclass_metrics([0, 1, 2, 2], [[.8, .1, .1], [.2, .7, .1], [.1, .2, .7], [.5, .1, .4]])
    >>> m["accuracy"], m["balanced_accuracy"], m["per_class"]["2"]["recall"], m["confusion_matrix"][2]
    (0.75, 0.8333333333333334, 0.5, [1, 0, 1])
    """
    y = np.asarray(labels).astype(int)
    p = np.asarray(probabilities, dtype=np.float64)
    matrix = multiclass_confusion(y, p)
    values = {**matrix_metrics(matrix), **{m: _multiclass_ranking(y, p, m) for m in THRESHOLD_FREE}}
    return {
        **{m: values[m] for m in MULTICLASS_METRICS},
        "per_class": {str(c): _class_against_rest(matrix, c) for c in range(p.shape[1])},
        "confusion_matrix": matrix.tolist(),
    }


def multiclass_confusion(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """K×K counts of (true class, argmax class)."""
    k = probabilities.shape[1]
    return np.bincount(labels * k + probabilities.argmax(axis=1), minlength=k * k).reshape(k, k)


def _class_against_rest(matrix: np.ndarray, c: int) -> dict[str, float]:
    tp = int(matrix[c, c])
    counts = {"tp": tp, "fp": int(matrix[:, c].sum()) - tp, "fn": int(matrix[c, :].sum()) - tp}
    counts["tn"] = int(matrix.sum()) - sum(counts.values())
    return {m: v for m, v in _from_confusion(counts).items() if m in PER_CLASS}


def matrix_metrics(matrix: np.ndarray) -> dict[str, float]:
    """The decision metrics of a K×K confusion matrix (MCC in Gorodkin's K-class form, as scikit-learn)."""
    n, support, predicted = matrix.sum(), matrix.sum(axis=1), matrix.sum(axis=0)
    per_class = [_class_against_rest(matrix, c) for c in range(len(matrix))]
    f1 = np.array([m["f1"] for m in per_class])
    correct = np.trace(matrix)
    mcc_den = np.sqrt(float(n**2 - (predicted**2).sum()) * float(n**2 - (support**2).sum()))
    return {
        "accuracy": float(_ratio(correct, n)),
        "balanced_accuracy": float(np.mean([m["recall"] for m, s in zip(per_class, support, strict=True) if s])),
        "f1_macro": float(f1.mean()),
        "f1_weighted": float(_ratio((f1 * support).sum(), n)),
        "mcc": float(_ratio(float(correct * n - (predicted * support).sum()), mcc_den)),
    }


def _multiclass_ranking(y: np.ndarray, p: np.ndarray, metric: str, score=None) -> float:
    """Multi-class log loss, or the macro one-vs-rest average of ROC-AUC / average precision (each class's
    from ``score``, by default scikit-learn's)."""
    if metric == "log_loss":  # rows renormalised: a float32 softmax sums to 1 only within ~1e-7
        q = np.clip(p, 1e-7, 1)
        return float(log_loss(y, q / q.sum(axis=1, keepdims=True), labels=list(range(p.shape[1]))))
    present = [c for c in range(p.shape[1]) if 0 < (y == c).sum() < len(y)]  # a curve needs both sides
    score = score or _ranking_metric
    return float(np.mean([score((y == c).astype(int), p[:, c], metric) for c in present]))


def fast_ranking(labels: np.ndarray, probabilities: np.ndarray, metric: str) -> float:
    """:func:`metric_value`, with ROC-AUC and average precision from one sort instead of scikit-learn's
    general code (the same formulas; 30× faster, for the bootstrap).

    >>> y, p = np.array([0, 1, 1, 0, 1]), np.array([0.1, 0.8, 0.3, 0.3, 0.9])
    >>> [round(fast_ranking(y, p, m), 6) == round(metric_value(y, p, m), 6) for m in ("roc_auc", "pr_auc")]
    [True, True]
    """
    if metric not in ("roc_auc", "pr_auc"):
        return metric_value(labels, probabilities, metric)
    if probabilities.ndim == 2:
        return _multiclass_ranking(labels, probabilities, metric, fast_ranking)
    if not 0 < labels.sum() < len(labels):
        return float("nan")
    order = np.argsort(-probabilities, kind="mergesort")
    y, p = labels[order], probabilities[order]
    last = np.r_[np.flatnonzero(np.diff(p)), len(p) - 1]  # the last image at each distinct threshold
    tps = np.cumsum(y)[last]
    fps = last + 1 - tps
    recall = tps / tps[-1]
    if metric == "pr_auc":
        return float(np.sum(np.diff(np.r_[0.0, recall]) * tps / (tps + fps)))
    return float(np.trapezoid(np.r_[0.0, recall], np.r_[0.0, fps / fps[-1]]))


def fold_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """:func:`binary_metrics` of (n,) probabilities of the positive class, :func:`multiclass_metrics` of (n, K)."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim == 1:
        return binary_metrics(labels, probabilities)
    return multiclass_metrics(labels, probabilities)


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
