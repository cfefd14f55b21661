"""Three classes from the Kaggle folders without copying a file (--label-from '_(bacteria|virus)_'):
NORMAL / bacteria / virus, end to end on real chest X-rays at 32 px; every number checked against
scikit-learn on the saved predictions, and what fit received."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from benchmark.cli import main
from tests.conftest import link_kaggle_subset, spied

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

CLASSES = ["NORMAL", "bacteria", "virus"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("three")
    # The first 60 PNEUMONIA files of the train split hold 31 bacteria and 29 virus images.
    data = link_kaggle_subset(base / "data", {"NORMAL": 30, "PNEUMONIA": 60}, test_per_class=20, wrapper=False)
    argv = ["run", "--data", str(data), "--out", str(base / "out"), "--cache-dir", str(base / "cache"),
            "--label-from", "_(bacteria|virus)_", "--archs", "baseline,pyramid_up", "--folds", "3",
            "--epochs", "2", "--image-size", "32", "-q"]  # fmt: skip
    code, calls = spied(lambda: main(argv), "fit")
    return {"code": code, "out": base / "out", "fits": calls["fit"]}


def read(path):
    return json.loads(path.read_text())


def class_of(path: str) -> str:
    return "NORMAL" if "/NORMAL/" in path else "bacteria" if "_bacteria_" in path else "virus"


def test_three_classes_are_found_and_split_stratified(run):
    assert run["code"] == 0
    info = read(run["out"] / "results.json")["run"]
    assert info["class_names"] == CLASSES and info["counts"] == {"NORMAL": 30, "bacteria": 31, "virus": 29}
    assert info["rank_by"] == "f1_macro"
    for fold in read(run["out"] / "splits.json")["folds"]:
        kinds = [class_of(p) for p in fold["score"]]
        assert sorted(set(kinds)) == ["NORMAL", "bacteria", "virus"] and abs(kinds.count("NORMAL") - 10) <= 1


def test_fit_gets_one_hot_targets_and_the_fit_parts_class_weights(run):
    splits = read(run["out"] / "splits.json")["folds"]
    for k, call in enumerate(run["fits"]):
        fit_paths = splits[k % 3]["train"]
        counts = [sum(class_of(p) == c for p in fit_paths) for c in CLASSES]
        n = len(fit_paths)
        assert call["class_weight"] == {c: pytest.approx(n / (3 * counts[c])) for c in range(3)}
        assert call["y"].shape == (n, 3) and np.all(call["y"].sum(axis=1) == 1)  # one-hot
        record = read(run["out"] / ("baseline" if k < 3 else "pyramid_up") / f"fold-{k % 3}" / "metrics.json")
        assert record["initial_bias"] == pytest.approx([np.log(c / n) for c in counts])


def test_every_fold_metric_equals_scikit_learn_on_the_saved_predictions(run):
    for arch in ("baseline", "pyramid_up"):
        for i in range(3):
            pred = pd.read_csv(run["out"] / arch / f"fold-{i}" / "predictions.csv")
            y, p = pred.label.to_numpy(), pred[[f"probability_{c}" for c in range(3)]].to_numpy()
            hard = p.argmax(axis=1)
            clipped = np.clip(p, 1e-7, 1)  # saved float32 softmax rows, made to sum to one as scikit-learn asks
            expected = {
                "accuracy": skm.accuracy_score(y, hard),
                "balanced_accuracy": skm.balanced_accuracy_score(y, hard),
                "f1_macro": skm.f1_score(y, hard, average="macro", zero_division=0),
                "f1_weighted": skm.f1_score(y, hard, average="weighted", zero_division=0),
                "roc_auc": skm.roc_auc_score(y, p, multi_class="ovr", average="macro"),
                "pr_auc": np.mean([skm.average_precision_score(y == c, p[:, c]) for c in range(3)]),
                "mcc": skm.matthews_corrcoef(y, hard),
                "log_loss": skm.log_loss(y, clipped / clipped.sum(axis=1, keepdims=True), labels=[0, 1, 2]),
            }
            m = read(run["out"] / arch / f"fold-{i}" / "metrics.json")["metrics"]
            for name, value in expected.items():
                assert m[name] == pytest.approx(value, abs=1e-9), (arch, i, name)
            recall = skm.recall_score(y, hard, average=None, labels=[0, 1, 2], zero_division=0)
            assert [m["per_class"][str(c)]["recall"] for c in range(3)] == pytest.approx(recall)
            assert m["confusion_matrix"] == skm.confusion_matrix(y, hard, labels=[0, 1, 2]).tolist()


def test_the_report_has_class_tables_and_no_thresholds(run):
    markdown = (run["out"] / "report.md").read_text()
    assert "| true ↓ / predicted →" in markdown and "each class against the rest (held-out (fold ensemble))" in markdown
    assert "(max F1)" not in markdown and "(Youden)" not in markdown
    assert "| baseline" in markdown.split("## 7.")[1] and "argmax" in markdown.split("## 7.")[1]
    winner = read(run["out"] / "results.json")["architectures"][0]["name"]
    with np.load(run["out"] / winner / "gradcam.npz") as panel:
        kinds = list(panel["kinds"])
    assert kinds and all(k.split(",")[0] in CLASSES for k in kinds)
    assert all(k.endswith(", right") or ", taken for " in k for k in kinds)
