"""--save-models all|best|none: which fold models stay once the held-out split is scored, saved without
the optimizer's state; the report and a resumed run work from what was kept."""

import zipfile

import h5py
import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.evaluation.comparison import best_fold
from benchmark.evaluation.results import read
from benchmark.store.runfolder import RunFolder
from tests.conftest import link_kaggle_subset


def run_args(data, out, tmp_path, *extra):
    return ["run", "--data", str(data), "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--archs",
            "baseline", "--folds", "3", "--epochs", "1", "--image-size", "32", "-q", *extra]  # fmt: skip


def weight_groups(model_file) -> list[str]:
    """The top-level groups of a .keras file's weights (an optimizer's state would be one of them)."""
    with zipfile.ZipFile(model_file) as z, z.open("model.weights.h5") as f, h5py.File(f) as h5:
        return list(h5)


@pytest.mark.slow
@pytest.mark.realdata
def test_best_keeps_the_best_folds_model_only_after_every_fold_scored_the_test_split(tmp_path):
    data = link_kaggle_subset(tmp_path / "data", {"NORMAL": 15, "PNEUMONIA": 15}, test_per_class=4, wrapper=False)
    out = tmp_path / "out"
    assert main(run_args(data, out, tmp_path, "--save-models", "best")) == 0
    results = read(RunFolder(out))
    best = best_fold(results.architectures[0], "f1")
    assert sorted(p.parent.name for p in out.glob("baseline/fold-*/model.keras")) == [f"fold-{best}"]
    assert len(list(out.glob("baseline/fold-*/test_predictions.csv"))) == 3  # the fold ensemble scored first
    assert "optimizer" not in weight_groups(out / "baseline" / f"fold-{best}" / "model.keras")
    assert main(["report", str(out)]) == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.csv")}
    assert main(run_args(data, out, tmp_path, "--save-models", "best")) == 0  # resumed: nothing trained again
    folds = pd.read_csv(out / "folds.csv")
    assert len(folds) == 3 and all(before[p] == p.stat().st_mtime_ns for p in out.glob("baseline/fold-*/*.csv"))


@pytest.mark.slow
@pytest.mark.realdata
def test_none_saves_no_model_and_all_keeps_every_one(tmp_path):
    data = link_kaggle_subset(tmp_path / "data", {"NORMAL": 15, "PNEUMONIA": 15}, test_per_class=4, wrapper=False)
    assert main(run_args(data, tmp_path / "none", tmp_path, "--save-models", "none")) == 0
    assert not list((tmp_path / "none").rglob("model.keras"))
    assert not list((tmp_path / "none").rglob("test_predictions.csv"))  # nothing left to score it with
    assert main(run_args(data, tmp_path / "all", tmp_path, "--no-save-models")) == 0  # the older spelling
    assert not list((tmp_path / "all").rglob("model.keras"))
    assert main(run_args(data, tmp_path / "all", tmp_path, "--save-models", "all", "--overwrite")) == 0
    assert len(list((tmp_path / "all").rglob("model.keras"))) == 3
