"""Grouped and repeated cross-validation end to end on real chest X-rays: the Kaggle file names' patient
groups never straddle fit, validation and score, splits.json records them, resume re-checks them."""

import json

import pytest

from benchmark.cli import main
from tests.conftest import link_kaggle_subset

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

ARGS = ["--folds", "3", "--repeats", "2", "--epochs", "1", "--image-size", "32", "--archs", "baseline,pyramid_up",
        "--groups", "kermany", "--no-save-models", "-q"]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("grouped")
    data = link_kaggle_subset(base / "data", {"NORMAL": 24, "PNEUMONIA": 48}, wrapper=False)
    argv = ["run", "--data", str(data), "--out", str(base / "out"), "--cache-dir", str(base / "cache"), *ARGS]
    assert main(argv) == 0
    return {"out": base / "out", "argv": argv}


def test_splits_json_holds_the_groups_and_no_group_straddles_a_fold(run):
    splits = json.loads((run["out"] / "splits.json").read_text())
    groups = splits["groups"]
    assert splits["repeats"] == 2 and [f["repeat"] for f in splits["folds"]] == [0, 0, 0, 1, 1, 1]
    assert (
        groups["train/PNEUMONIA/person1000_bacteria_2931.jpeg"] == groups["train/PNEUMONIA/person1000_virus_1681.jpeg"]
    )
    for fold in splits["folds"]:
        parts = [{groups[p] for p in fold[part]} for part in ("train", "val", "score")]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    for r in (0, 1):  # each repeat scores every image once
        scored = [p for f in splits["folds"][3 * r : 3 * r + 3] for p in f["score"]]
        assert sorted(scored) == sorted(groups)


def test_every_repeat_is_trained_and_compared_as_repeated_cv(run):
    results = json.loads((run["out"] / "results.json").read_text())
    assert all(len(e["metrics"]["f1"]["folds"]) == 6 for e in results["architectures"])
    assert sorted(p.name for p in (run["out"] / "baseline").iterdir()) == [f"fold-{j}" for j in range(6)]
    assert results["comparison"]["test"] == "Bouckaert–Frank corrected repeated k-fold t-test"
    assert results["run"]["repeats"] == 2
    words = results["run"]["splits"]
    assert words.startswith("stratified 3-fold, repeated 2 times, grouped (--groups kermany; groups per class: NORMAL ")
    assert words in (run["out"] / "report.md").read_text()


def test_resume_refuses_folds_where_a_group_straddles(run, capsys):
    path = run["out"] / "splits.json"
    splits = json.loads(path.read_text())
    splits["folds"][0]["train"].append(splits["folds"][0]["score"][-1])  # an image scored in fold 1, fitted there too
    path.write_text(json.dumps(splits))
    assert main(run["argv"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "is in both the train and the score part of fold 1" in err
