"""The Python API drives a small real-data run; the console shows the tool's own lines first."""

import logging
import os
import subprocess
import sys

import pytest

import benchmark
from benchmark import UsageError
from tests.conftest import ROOT, link_kaggle_subset

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return link_kaggle_subset(tmp_path_factory.mktemp("api"), {"NORMAL": 12, "PNEUMONIA": 12}, wrapper=False)


def test_a_run_from_python_returns_its_results(data, tmp_path, caplog):
    events = []
    with caplog.at_level(logging.INFO, logger="benchmark"):
        results = benchmark.run(
            data,
            tmp_path / "out",
            archs="baseline,pyramid_up",
            folds=2,
            epochs=1,
            image_size=32,
            cache_dir=tmp_path / "cache",
            quiet=True,
            progress=events.append,
        )
    assert results.status == 0 and results.path == tmp_path / "out" and results.report.is_file()
    board = results.leaderboard
    assert list(board.architecture) == [e.name for e in results.architectures] and list(board["rank"]) == [1, 2]
    assert board.f1.tolist() == [e.metrics["f1"].mean for e in results.architectures]
    assert len(results.folds) == 4 and len(results.oof) == 2 * 24 and results.run.rank_by == "f1"
    folds = [e for e in events if e["event"] == "fold"]
    assert [e["done"] for e in folds] == [1, 2, 3, 4] and folds[-1]["eta_seconds"] == 0
    assert all(e["record"]["metrics"]["f1"] == r for e, r in zip(folds, results.folds.f1, strict=True))
    assert {e["event"] for e in events} == {"epoch", "fold"}
    assert any(r.name == "benchmark" and "decoding 24 training images" in r.getMessage() for r in caplog.records)
    again = benchmark.load(tmp_path / "out")
    assert again.leaderboard.equals(board) and again.comparison == results.comparison


def test_unknown_settings_are_named():
    with pytest.raises(UsageError, match=r"unknown setting\(s\) epoch, fold; known: .*folds"):
        benchmark.run("x", fold=2, epoch=1)


def test_a_bad_setting_is_named_as_it_was_typed_in_python(tmp_path):
    with pytest.raises(UsageError) as raised:
        benchmark.run(data=tmp_path, out=tmp_path / "out", val_fraction=1.5)
    assert str(raised.value).startswith("val_fraction=1.5: give a fraction between 0 and 1")
    assert raised.value.setting == "val_fraction" and "--" not in str(raised.value)
    with pytest.raises(UsageError, match=r"^image_size=0: give a positive whole number"):
        benchmark.run(data=tmp_path, out=tmp_path / "out", image_size=0)
    assert not (tmp_path / "out").exists()


def test_the_first_screen_is_the_tools_own_and_the_backends_talk_goes_to_run_log(data, tmp_path):
    args = [sys.executable, "-m", "benchmark.cli", "run", "--data", str(data), "--out", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache"), "--archs", "baseline", "--folds", "2", "--epochs", "1",
            "--image-size", "32", "--no-save-models"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell has it
    quiet = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    first = quiet.stderr.splitlines()[0]
    assert first.startswith("decoding 24 training images at 32 px"), quiet.stderr[:500]
    for noise in ("absl", "cuInit", "oneDNN", "cuda", "WARNING", "Warning"):
        assert noise not in quiet.stderr, noise
    log = (tmp_path / "out" / "run.log").read_text()
    assert "absl" in log or "cuda" in log.lower()  # TensorFlow's start-up messages, kept
    verbose = subprocess.run([*args, "--out", str(tmp_path / "v"), "-v"], cwd=ROOT, capture_output=True, text=True,
                             timeout=300, env=env)  # fmt: skip
    assert verbose.returncode == 0 and ("absl" in verbose.stderr or "cuda" in verbose.stderr.lower())


def test_a_quiet_run_in_a_jupyter_kernel_prints_nothing_and_shows_a_short_leaderboard(data, tmp_path):
    """A real kernel (nbclient): with quiet=True the cell has no output at all (the backends' start-up lines
    go to run.log, the leaderboard is the returned Results), whose reprs are a short table."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    out = tmp_path / "out"
    run = (
        "import benchmark\n"
        f"results = benchmark.run({str(data)!r}, {str(out)!r}, archs='baseline', folds=2, epochs=1, image_size=32, "
        f"cache_dir={str(tmp_path / 'cache')!r}, save_models='none', quiet=True)"
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(run), nbformat.v4.new_code_cell("results")])
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's kernel has it
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3")
    client.execute(cwd=str(ROOT), env=env)
    assert notebook.cells[0].outputs == []  # nothing on stdout or stderr
    shown = notebook.cells[1].outputs[0]["data"]
    plain, page = shown["text/plain"], shown["text/html"]
    assert plain.startswith(f"Results of {out} (status 0)") and len(plain.splitlines()) == 3 and len(plain) < 400
    assert "baseline" in page and "None" not in page and page.count("<tr") == 2
    log = (out / "run.log").read_text()
    assert "absl" in log or "cuda" in log.lower()  # TensorFlow's start-up messages, kept there
