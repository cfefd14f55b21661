"""`benchmark compare` on small real runs: what differs, paired tests where the folds are the same,
intervals (and the statement that this is weaker) where they are not, a self-contained page."""

import json

import pytest

from benchmark.cli import main
from benchmark.statistics import corrected_ttest
from tests.conftest import link_kaggle_subset

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("compare")
    data = link_kaggle_subset(base / "data", {"NORMAL": 12, "PNEUMONIA": 12}, test_per_class=4, wrapper=False)
    common = ["--data", str(data), "--cache-dir", str(base / "cache"), "--archs", "baseline", "--folds", "2",
              "--epochs", "1", "-q"]  # fmt: skip
    variants = {"a": ["--image-size", "32"], "b": ["--image-size", "40"], "c": ["--image-size", "32", "--seed", "7"]}
    for name, extra in variants.items():
        assert main(["run", *common, "--out", str(base / name), *extra]) == 0
    return base


def test_compare_tests_runs_on_the_same_folds_and_says_when_it_cannot(runs, capsys):
    assert main(["compare", str(runs / "a"), str(runs / "b"), str(runs / "c"), "--out", str(runs / "cmp")]) == 0
    markdown = capsys.readouterr().out
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines() if line.startswith("| ")]
    assert ["image_size", "32", "40", "32"] in rows and ["seed", "42", "42", "7"] in rows
    folds = [json.loads((runs / r / "results.json").read_text())["architectures"][0] for r in ("a", "b")]
    test = corrected_ttest(folds[1]["metrics"]["f1"]["folds"], folds[0]["metrics"]["f1"]["folds"],
                           folds[0]["test_fraction"])  # fmt: skip
    assert ["baseline", f"{test.mean_difference:+.4f}", f"[{test.ci_low:+.4f}, {test.ci_high:+.4f}]",
            f"{test.t:.2f}", f"{test.p:.3g}"] in rows  # fmt: skip
    assert "A and C were not cross-validated on the same folds" in markdown and "weaker comparison" in markdown
    assert "test 0." in markdown  # held-out figures side by side
    page = (runs / "cmp" / "compare.html").read_text()
    assert "http://" not in page and "https://" not in page
    first_section = page.split("<h2>1. Runs and what differs</h2>")[1]
    assert first_section.lstrip().startswith("<figure><img")  # the forest plot opens the page


def test_compare_needs_two_run_folders(runs, tmp_path, capsys):
    assert main(["compare", str(runs / "a")]) == 2
    assert main(["compare", str(runs / "a"), str(tmp_path)]) == 2
    assert "no readable results.json" in capsys.readouterr().err
