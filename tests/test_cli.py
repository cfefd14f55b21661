"""The command line's user errors: exit status 2, one paragraph, no traceback."""

import re
from pathlib import Path

import pytest

from benchmark import UsageError
from benchmark.cli import main
from benchmark.config import default_data_dir
from tests.conftest import REAL_224


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize(
    "make, extra, message",
    [
        (lambda f: f({}) / "missing", [], "no such folder"),
        (lambda f: f({}), [], "no images found"),
        (lambda f: f({"NORMAL": 6}), [], "two or more non-empty class folders"),
        (lambda f: f({"A": 6, "B": 6, "C": 6}), ["--positive", "A"], "--positive A: a positive class belongs to two"),
        (lambda f: f({"A": 6, "B": 6, "C": 6}), ["--rank-by", "f1"], "--rank-by f1: not a metric of a 3-class task"),
        (lambda f: f({"A": 6, "B": 6, "C": 3}), ["--folds", "5"], "class C has only 3 image"),
        (lambda f: f({"NORMAL": 6, "PNEUMONIA": 3}), ["--folds", "5"], "class PNEUMONIA has only 3 image"),
        (lambda f: f({"NORMAL": 6, "PNEUMONIA": 6}), ["--archs", "resnet999"], "'resnet999' matches no architecture"),
        (lambda f: f({"NORMAL": 6, "PNEUMONIA": 6}), ["--archs", "vgg_*"], "'vgg_\\*' matches no architecture"),
        (lambda f: f({"NORMAL": 6, "PNEUMONIA": 6}), ["--folds", "1"], "at least 2 folds"),
        (lambda f: f({"NORMAL": 6, "PNEUMONIA": 6}), ["--epochs", "0"], "--epochs 0: give a positive whole number"),
        (lambda f: f({"NORMAL": 6, "PNEUMONIA": 6}), ["--label-smoothing", "1"], "--label-smoothing 1.0: give a"),
    ],
)
def test_user_errors_exit_2_with_one_paragraph(synthetic_folder, tmp_path, capsys, make, extra, message):
    data = make(synthetic_folder)
    code, err = run_cli(["run", "--data", str(data), "--out", str(tmp_path / "run"), *extra], capsys)
    assert code == 2
    assert err.startswith("error: ")
    assert "Traceback" not in err
    assert re.search(message, " ".join(err.split()))
    assert not (tmp_path / "run").exists()  # nothing written for a run that could not start


def test_no_data_anywhere_names_the_kaggle_source(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BENCHMARK_DATA", raising=False)
    code, err = run_cli(["run"], capsys)
    assert code == 2
    assert "chest-xray-pneumonia" in err and "--data" in err and "BENCHMARK_DATA" in err


def test_data_default_comes_from_env_then_setup_cfg(tmp_path):
    (tmp_path / "setup.cfg").write_text("[tool:benchmark]\ndata = ../images\n")
    assert default_data_dir(tmp_path, environ={}) == (tmp_path.parent / "images").resolve()
    assert default_data_dir(tmp_path, environ={"BENCHMARK_DATA": "/data/x"}) == Path("/data/x")
    with pytest.raises(UsageError, match="no data folder given"):
        default_data_dir(tmp_path / "elsewhere", environ={})


@pytest.mark.realdata
def test_repository_setup_cfg_points_at_the_shared_data():
    assert default_data_dir(Path(__file__).resolve().parents[1], environ={}) == REAL_224.resolve()


def test_list_shows_every_architecture_with_parameters(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines()[2:] if line.strip()]
    assert len(rows) >= 7
    baseline = next(r for r in rows if r.startswith("baseline "))
    # 16·9+16 + 32·16·9+32 + 64·32·9+64 + 7·7·64·128+128 + 128+1 at 56 px, 1 channel
    assert "424,961" in baseline


NO_DENSE_END = """
import keras
from keras import layers

from architectures import register


@register
def zz_no_dense_end(input_shape):
    "Dense(1), then a separate sigmoid: nothing the tool can replace by a softmax."
    inputs = keras.Input(shape=input_shape)
    x = layers.Dense(1)(layers.GlobalAveragePooling2D()(inputs))
    return keras.Model(inputs, layers.Activation("sigmoid")(x))
"""


def test_an_architecture_that_cannot_serve_k_classes_stops_the_run_before_training(synthetic_folder, tmp_path, capsys):
    module = tmp_path / "no_dense_end.py"
    module.write_text(NO_DENSE_END)
    data = synthetic_folder({"A": 12, "B": 12, "C": 12})
    args = ["run", "--data", str(data), "--out", str(tmp_path / "run"), "--arch-module", str(module)]
    code, err = run_cli([*args, "--archs", "baseline,zz_no_dense_end", "--folds", "2", "--val-fraction", "0.3"], capsys)
    assert code == 2 and "Traceback" not in err
    assert "--archs zz_no_dense_end: cannot serve 3 classes: it ends in Activation" in " ".join(err.split())
    assert not (tmp_path / "run").exists()  # nothing trained


def test_run_help_gives_every_flag_words_and_no_empty_default(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and "(default: the user cache folder)" in text
    assert "--folds FOLDS k of the stratified k-fold cross-validation (default: 5)" in text


def test_progress_lines_say_one_epoch_and_no_eta_before_anything_is_measured():
    import io

    from benchmark.progress import Progress

    stream = io.StringIO()
    progress = Progress(["a", "a"], stream=stream)
    record = {"epochs": 1, "best_epoch": 1, "fit_seconds": 3.0, "metrics": {"f1": 0.5, "roc_auc": 0.6}}
    progress.fold_done("a", 0, 2, record, None, note="(saved) ")  # a resumed fold: nothing measured
    progress.fold_done("a", 1, 2, record, 3.0)
    first, second = stream.getvalue().splitlines()
    assert first.endswith("1 epoch (best 1)  f1 0.500  roc_auc 0.600  3 s") and "ETA" not in first
    assert "ETA 0 s" in second


def test_with_one_job_a_folds_time_is_the_wait_between_folds_and_unmeasured_ones_scale_by_their_flops(
    monkeypatch,
):
    """The driver's work around a fold (saving, scoring) is part of what the user waits for; an
    architecture not measured yet costs its FLOPs^0.7 against the measured ones'."""
    from benchmark import progress as module

    clock = iter([100.0, 130.0, 160.0])  # the run begins, then two folds finish 30 s apart
    monkeypatch.setattr(module.time, "perf_counter", lambda: next(clock))
    progress = module.Progress(["a", "a", "b"], quiet=True, costs={"a": 1e6, "b": 8e6})
    progress.fold_done("a", 0, 2, None, 25.0)  # trained 25 s of the 30
    progress.fold_done("a", 1, 2, None, 25.0)
    assert progress.expected() == {"a": 30.0, "b": pytest.approx(30.0 * 8**0.7)}
    assert progress.eta_seconds() == pytest.approx(30.0 * 8**0.7)


def test_the_decoding_line_says_which_images(synthetic_folder, tmp_path):
    from benchmark.config import DataSettings
    from benchmark.data import discover
    from benchmark.runner import decode

    root = synthetic_folder({"A": 3, "B": 3})
    synthetic_folder({"A": 2, "B": 2}, split="test")
    dataset, said = discover(root), []
    settings = DataSettings(root, image_size=16, cache_dir=tmp_path / "cache")
    for split in (dataset.train, dataset.test):
        decode(settings, dataset, split, said.append)
    assert [line.split(" at ")[0] for line in said] == ["decoding 6 training images", "decoding 4 test images"]


def test_a_librarys_warning_goes_to_the_log_and_the_users_own_to_the_terminal(capsys):
    """joblib's loky warns "A worker stopped while some jobs were given to the executor" when it replaces a
    worker: kept in run.log, not on the user's screen; a warning from the user's own code still shows."""
    from benchmark.console import Console

    def warn_from(filename: str, message: str) -> None:
        exec(compile(f"import warnings; warnings.warn({message!r}, UserWarning)", filename, "exec"), {})

    with Console() as console:
        warn_from("/venv/lib/site-packages/joblib/externals/loky/process_executor.py", "A worker stopped")
        warn_from("/home/me/analysis.py", "my own warning")
        log = console.log.read_text()
    assert "A worker stopped" in log and "my own warning" not in log
    err = capsys.readouterr().err
    assert "my own warning" in err and "A worker stopped" not in err
