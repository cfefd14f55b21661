"""`benchmark compare` on small real runs: what differs, paired tests where the folds are the same,
intervals (and the statement that this is weaker) where they are not, a self-contained page; runs it
cannot set side by side and damaged run folders refused in one paragraph, never a traceback."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from benchmark.cli import main
from benchmark.evaluation.statistics import corrected_ttest
from tests.conftest import link_kaggle_subset

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


def common(base) -> list[str]:
    """The settings of the fixture's runs (as given to `benchmark run`), but --archs and --out."""
    return ["--data", str(base / "data"), "--cache-dir", str(base / "cache"), "--folds", "2", "--epochs", "1", "-q"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("compare")
    link_kaggle_subset(base / "data", {"NORMAL": 12, "PNEUMONIA": 12}, test_per_class=4, wrapper=False)
    variants = {
        "a": ["--image-size", "32"],
        "b": ["--image-size", "40", "--tensorboard"],  # a setting that changes no number
        "c": ["--image-size", "32", "--seed", "7"],
    }
    for name, extra in variants.items():
        assert main(["run", *common(base), "--archs", "baseline", "--out", str(base / name), *extra]) == 0
    return base


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    """A real three-class run (NORMAL / bacteria / virus from file names, no test split), as in test_multiclass."""
    base = tmp_path_factory.mktemp("three")
    data = link_kaggle_subset(base / "data", {"NORMAL": 12, "PNEUMONIA": 24}, wrapper=False)
    argv = ["run", "--data", str(data), "--cache-dir", str(base / "cache"), "--label-from", "_(bacteria|virus)_",
            "--archs", "baseline", "--folds", "2", "--epochs", "1", "--image-size", "32", "--val-fraction", "0.2",
            "-q", "--out", str(base / "out")]  # fmt: skip
    assert main(argv) == 0
    return base / "out"


def copy_run(runs, tmp_path, name="a"):
    return shutil.copytree(runs / name, tmp_path / name)


def refused(capsys, *argv) -> str:
    """`benchmark compare` exits 2 with one paragraph on standard error; that paragraph, unwrapped."""
    assert main(["compare", *map(str, argv)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("error: ") == 1 and "Traceback" not in err
    return " ".join(err.split())


def test_compare_tests_runs_on_the_same_folds_and_says_when_it_cannot(runs, capsys):
    assert main(["compare", str(runs / "a"), str(runs / "b"), str(runs / "c"), "--out", str(runs / "cmp")]) == 0
    markdown = capsys.readouterr().out
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines() if line.startswith("| ")]
    assert ["image_size", "32", "40", "32"] in rows and ["seed", "42", "42", "7"] in rows
    assert not any(row[0] == "tensorboard" for row in rows)  # listed apart: it changes no number
    assert "Differ too, but change no number (what the runs mirrored or drew): tensorboard (A False, B True, " \
        "C False)." in markdown  # fmt: skip
    folds = [json.loads((runs / r / "results.json").read_text())["architectures"][0] for r in ("a", "b")]
    test = corrected_ttest(folds[1]["metrics"]["f1"]["folds"], folds[0]["metrics"]["f1"]["folds"],
                           folds[0]["test_fraction"])  # fmt: skip
    assert ["baseline", f"{test.mean_difference:+.4f}", f"[{test.ci_low:+.4f}, {test.ci_high:+.4f}]",
            f"{test.t:.2f}", f"{test.p:.3g}"] in rows  # fmt: skip
    assert "A and C were not cross-validated on the same folds" in markdown and "weaker comparison" in markdown
    assert "test 0." in markdown  # held-out figures side by side
    assert ["A", str(runs / "a"), "NORMAL, PNEUMONIA"] in rows  # each run's classes
    page = (runs / "cmp" / "compare.html").read_text()
    assert "http://" not in page and "https://" not in page
    first_section = page.split("<h2>1. Runs and what differs</h2>")[1]
    assert first_section.lstrip().startswith("<figure><img")  # the forest plot opens the page


def test_compare_without_out_writes_a_folder_named_after_the_runs_and_says_where(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", str(runs / "a"), str(runs / "c")]) == 0
    written = tmp_path / "reports" / "compare-a-c"
    assert capsys.readouterr().err.strip() == f"wrote {Path('reports/compare-a-c/compare.html')}"
    assert (written / "compare.html").is_file() and (written / "compare_files" / "forest.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports"]  # nothing else in the current folder


def test_every_tracking_setting_is_listed_as_changing_no_number():
    from dataclasses import fields

    from benchmark.config import TrackingSettings
    from benchmark.report.compare import NO_NUMBER_SETTINGS

    assert {f.name for f in fields(TrackingSettings)} | {"gradcam_archs"} == NO_NUMBER_SETTINGS


def test_compare_needs_two_run_folders(runs, tmp_path, capsys):
    assert main(["compare", str(runs / "a")]) == 2
    assert main(["compare", str(runs / "a"), str(tmp_path)]) == 2
    assert "no readable results.json" in capsys.readouterr().err


def test_compare_refuses_runs_on_different_classes(runs, three_classes, tmp_path, capsys):
    message = refused(capsys, runs / "a", three_classes, "--out", tmp_path / "cmp")
    assert f"A {runs / 'a'}: NORMAL, PNEUMONIA; B {three_classes}: NORMAL, bacteria, virus" in message
    assert not (tmp_path / "cmp" / "compare.html").exists()


def test_compare_on_different_ranking_metrics_uses_the_first_runs_and_says_so(runs, tmp_path, capsys):
    ranked = copy_run(runs, tmp_path)  # the same run, published again ranked by accuracy (its folds loaded)
    assert main(["run", *common(runs), "--archs", "baseline", "--image-size", "32", "--rank-by", "accuracy",
                 "--out", str(ranked)]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["compare", str(ranked), str(runs / "a"), "--out", str(tmp_path / "cmp")]) == 0
    markdown = capsys.readouterr().out
    assert "ranked by different metrics (A by accuracy, B by f1); every run is compared here on accuracy" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| baseline ") and "test" in line)
    for folder, cell in zip((ranked, runs / "a"), row.strip("|").split("|")[1:], strict=True):
        entry = json.loads((folder / "results.json").read_text())["architectures"][0]
        tests = [pd.read_csv(folder / "baseline" / f"fold-{i}" / "test_predictions.csv") for i in range(2)]
        ensemble = np.mean([t.probability for t in tests], axis=0)
        assert cell.strip().startswith(f"{np.mean(entry['metrics']['accuracy']['folds']):.3f} [")
        assert cell.strip().endswith(f"; test {accuracy_score(tests[0].label, ensemble >= 0.5):.3f}")


def test_compare_says_which_architectures_it_leaves_out_and_refuses_runs_sharing_none(runs, tmp_path, capsys):
    both = copy_run(runs, tmp_path)  # resumed with a second architecture: baseline's folds loaded, pyramid_up trained
    argv = ["run", *common(runs), "--image-size", "32"]
    assert main([*argv, "--archs", "baseline,pyramid_up", "--out", str(both)]) == 0
    only = shutil.copytree(both, tmp_path / "only")
    assert main([*argv, "--archs", "pyramid_up", "--out", str(only)]) == 0
    capsys.readouterr()
    assert main(["compare", str(both), str(runs / "a"), "--out", str(tmp_path / "cmp")]) == 0
    assert "Compared: the architectures every run finished. Left out: A: pyramid_up." in capsys.readouterr().out
    message = refused(capsys, runs / "a", only, "--out", tmp_path / "cmp2")
    assert f"share no finished architecture — A {runs / 'a'}: baseline; B {only}: pyramid_up." in message


def test_compare_out_naming_a_file_is_refused_and_the_file_kept(runs, tmp_path, capsys):
    mine = tmp_path / "notes.txt"
    mine.write_bytes(b"my notes\n")
    assert f"compare --out {mine}: a file, not a folder" in refused(capsys, runs / "a", runs / "b", "--out", mine)
    assert mine.read_bytes() == b"my notes\n"
    assert "cannot write there" in refused(capsys, runs / "a", runs / "b", "--out", mine / "sub")


# RunFolder.damaged's wording, shared by `report` and `compare`
REWRITE = (
    "Rerun the run's `benchmark run` command with --out {run}: finished folds are read, not trained, and the file is "
    "written anew."
)


@pytest.mark.parametrize(
    "content",
    ["[]", "{}", '{"architectures": 3}', '"results"', "no metrics", "no f1", "fold scores of text"],
)
def test_compare_refuses_a_results_json_of_the_wrong_shape(runs, tmp_path, capsys, content):
    run = copy_run(runs, tmp_path)
    results = json.loads((run / "results.json").read_text())
    if content == "no metrics":
        del results["architectures"][0]["metrics"]
    elif content == "no f1":  # the run's ranking metric
        del results["architectures"][0]["metrics"]["f1"]
    elif content == "fold scores of text":
        results["architectures"][0]["metrics"]["f1"]["folds"] = "high"
    else:
        results = json.loads(content)
    (run / "results.json").write_text(json.dumps(results))
    message = refused(capsys, runs / "b", run, "--out", tmp_path / "cmp")
    assert f"{run / 'results.json'}: " in message and "not what `benchmark run` writes" in message
    assert REWRITE.format(run=run) in message


@pytest.mark.parametrize(
    "content",
    [bytes(range(255, -1, -1)) * 4, b"arch,fold,accuracy\nbaseline,0,0.5\nbaseline,1,0.5\n", b"x", b"\n"],
    ids=["binary", "no-f1-column", "one-byte", "empty"],
)
def test_compare_refuses_a_damaged_folds_csv(runs, tmp_path, capsys, content):
    run = copy_run(runs, tmp_path)
    (run / "folds.csv").write_bytes(content)
    message = refused(capsys, run, runs / "b", "--out", tmp_path / "cmp")
    assert f"{run / 'folds.csv'}: " in message and REWRITE.format(run=run) in message


def test_compare_reads_the_held_out_figures_from_results_json(runs, tmp_path, capsys):
    """Today's results.json holds the held-out scores: compare reads them, not the test predictions; an older
    one is completed from the predictions, and a damaged prediction file is named with the fix."""
    run = copy_run(runs, tmp_path)
    (run / "baseline" / "fold-1" / "test_predictions.csv").write_bytes(b"path,label\n")
    assert main(["compare", str(run), str(runs / "b"), "--out", str(tmp_path / "cmp")]) == 0
    results = json.loads((run / "results.json").read_text())
    test_f1 = results["heldout"]["baseline"]["ensemble"][0]["metrics"]["f1"]
    assert f"; test {test_f1:.3f}" in capsys.readouterr().out
    del results["heldout"], results["format"]  # as written before the held-out scores were kept
    (run / "results.json").write_text(json.dumps(results))
    message = refused(capsys, run, runs / "b", "--out", tmp_path / "cmp")
    assert f"{run}: its results.json predates this version and cannot be completed" in message
    assert f"Delete the damaged file and rerun `benchmark run` with --out {run}" in message


def test_compare_refuses_a_config_json_of_the_wrong_shape(runs, tmp_path, capsys):
    run = copy_run(runs, tmp_path)
    (run / "config.json").write_text('{"settings": ["image_size", 32]}')
    message = refused(capsys, runs / "b", run, "--out", tmp_path / "cmp")
    assert f"{run / 'config.json'}: its settings are not an object" in message and REWRITE.format(run=run) in message
