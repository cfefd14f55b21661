import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from benchmark.evaluation.metrics import (
    METRICS,
    binary_metrics,
    curve_statistics,
    longest_wait,
    max_f1_threshold,
    multiclass_metrics,
    oscillation_index,
    youden_threshold,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_metric_equals_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1)
    pred = (p >= 0.5).astype(int)
    m = binary_metrics(y, p)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred),
        "recall": skm.recall_score(y, pred),
        "specificity": tn / (tn + fp),
        "f1": skm.f1_score(y, pred),
        "roc_auc": skm.roc_auc_score(y, p),
        "pr_auc": skm.average_precision_score(y, p),
        "mcc": skm.matthews_corrcoef(y, pred),
        "log_loss": skm.log_loss(y, p),
    }
    assert set(expected) == set(METRICS)
    for name, value in expected.items():
        assert m[name] == pytest.approx(value, abs=1e-12), name
    assert m["confusion_matrix"] == [[tn, fp], [fn, tp]]


def test_hand_computed_example():
    # 3 negatives, 3 positives; at 0.5: tn=2, fp=1, fn=1, tp=2
    m = binary_metrics([0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.7, 0.4, 0.8, 0.9])
    assert m["confusion_matrix"] == [[2, 1], [1, 2]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == m["recall"] == m["specificity"] == m["f1"] == pytest.approx(2 / 3)
    assert m["mcc"] == pytest.approx(1 / 3)
    assert m["roc_auc"] == pytest.approx(8 / 9)


def test_degenerate_predictions_follow_zero_division_zero():
    m = binary_metrics([0, 1, 1], [0.1, 0.2, 0.3])  # never predicts positive
    assert m["precision"] == 0 and m["recall"] == 0 and m["f1"] == 0 and m["mcc"] == 0
    assert m["specificity"] == 1


def test_oscillation_and_wait_on_hand_made_curves():
    assert oscillation_index([0.9, 0.5, 0.7, 0.4, 0.6, 0.3]) == 1.0  # high, low, high, low
    assert oscillation_index([0.9, 0.7, 0.6, 0.55, 0.54]) == 0.0  # smooth descent
    assert oscillation_index([0.9, 0.7, 0.6, 0.65, 0.7]) == pytest.approx(1 / 3)  # U-shape: one turn
    assert oscillation_index([0.5, 0.5, 0.5]) == 0.0
    assert longest_wait([0.9, 0.8, 0.85, 0.84, 0.83, 0.7, 0.75, 0.76]) == 3
    assert longest_wait([0.9, 0.8, 0.7]) == 0


def test_curve_statistics_on_hand_made_folds():
    histories = [
        {"loss": [0.7, 0.5, 0.4, 0.3], "val_loss": [0.6, 0.5, 0.55, 0.58]},
        {"loss": [0.7, 0.5, 0.4], "val_loss": [0.8, 0.7, 0.4]},
    ]
    s = curve_statistics(histories, patience=2)
    # epochs 1-3 in common; across-fold variances (ddof=1): 0.02, 0.02, 0.01125
    assert s["common_epochs"] == 3
    assert s["val_loss_variance"] == pytest.approx((0.02 + 0.02 + 0.01125) / 3)
    assert s["best_epoch"] == [2, 3] and s["epochs"] == [4, 3]
    assert s["gap"]["folds"] == pytest.approx([0.0, 0.0])
    assert s["oscillation"]["folds"] == pytest.approx([0.5, 0.0])
    assert s["suggested_patience"] == 2
    assert s["patience"] == 2


def test_max_f1_threshold_is_the_best_of_all_thresholds():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.35 * y + rng.random(300) * 0.65, 0, 1)
    t = max_f1_threshold(y, p)
    best = max(binary_metrics(y, p, c)["f1"] for c in np.unique(p))
    assert binary_metrics(y, p, t)["f1"] == pytest.approx(best)


def test_youden_threshold_is_the_best_balanced_one_whatever_the_class_share():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 400)
    p = np.clip(0.35 * y + rng.random(400) * 0.65, 0, 1)

    def j(labels, probabilities, t):
        m = binary_metrics(labels, probabilities, t)
        return m["recall"] + m["specificity"] - 1

    t = youden_threshold(y, p)
    assert j(y, p, t) == pytest.approx(max(j(y, p, c) for c in np.unique(p)))
    # Tripling every positive changes the class share, not sensitivity or specificity: J's choice stays.
    y3, p3 = np.concatenate([y, y[y == 1], y[y == 1]]), np.concatenate([p, p[y == 1], p[y == 1]])
    assert youden_threshold(y3, p3) == t


def test_multiclass_log_loss_takes_a_float32_softmax_without_a_warning():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 3)).astype(np.float32)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # what a model saves: rows sum to 1 ± 1e-7
    y = rng.integers(0, 3, 500)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn warns on every fold of a K-class run otherwise
        value = multiclass_metrics(y, p)["log_loss"]
    exact = p.astype(np.float64) / p.sum(axis=1, keepdims=True, dtype=np.float64)
    assert value == pytest.approx(skm.log_loss(y, exact), rel=1e-9)
