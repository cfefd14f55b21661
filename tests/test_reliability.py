"""Reliability on the real chest X-rays: a full disk, failures isolated (build, output shape, NaN,
out of memory), odd folder and file names, the data folder left untouched, bad --arch-module/--out.

(Crash/resume, the run-folder lock and Ctrl-C are in test_end_to_end.py.)"""

import errno
import json
import os
import textwrap

import numpy as np
import pytest

import benchmark.output
import benchmark.training
from benchmark.cli import main
from benchmark.files import write_text
from tests.conftest import link_kaggle_subset, real_files

SMALL = ["--folds", "3", "--epochs", "1", "--image-size", "32", "--batch-size", "32"]


def argv(data, base, archs, *extra):
    return ["run", "--data", str(data), "--out", str(base / "out"), "--cache-dir", str(base / "cache"),
            "--archs", archs, *SMALL, *extra]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """12 NORMAL and 12 PNEUMONIA real training images, in a plain Kaggle layout (no test split)."""
    return link_kaggle_subset(tmp_path_factory.mktemp("data"), {"NORMAL": 12, "PNEUMONIA": 12}, wrapper=False)


def no_temporary_files(folder):
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name or p.name.startswith(".lock")]


def test_a_failed_write_keeps_the_old_file_whole(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    write_text(target, '{"old": true}')

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_text(target, '{"new": true, "padding": "' + "x" * 10_000 + '"}')
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # the temporary file is gone


def test_a_full_disk_stops_the_run_clearly_and_a_rerun_resumes(data, tmp_path, monkeypatch, capsys):
    real_write_csv = benchmark.output.write_csv

    def write_csv(path, frame):
        if path.parent.name == "fold-1" and path.name == "history.csv":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write_csv(path, frame)

    monkeypatch.setattr(benchmark.output, "write_csv", write_csv)
    args = argv(data, tmp_path, "baseline")
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "No space left on device" in err and "fold-1/history.csv" in err and "Traceback" not in err
    assert f"rerun the same command with --out {tmp_path / 'out'}" in err
    out = tmp_path / "out"
    assert json.loads((out / "baseline" / "fold-0" / "metrics.json").read_text())["fold"] == 0
    assert not (out / "baseline" / "fold-1" / "metrics.json").exists()
    assert no_temporary_files(out) == []  # no half-written file, and the lock is released

    monkeypatch.setattr(benchmark.output, "write_csv", real_write_csv)  # space freed
    assert main(args) == 0
    assert capsys.readouterr().err.count("(saved)") == 1  # fold 0 was not retrained
    assert len(json.loads((out / "results.json").read_text())["architectures"][0]["metrics"]["f1"]["folds"]) == 3


FAILING = textwrap.dedent("""
    import keras
    from keras import layers

    from architectures import register
    from architectures.baseline import conv_net


    @register("zz_nan", description="Its output is NaN, so its loss is.")
    def nan(input_shape):
        inputs = keras.Input(shape=input_shape)
        x = layers.Dense(1)(layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3)(inputs)))
        x = layers.Lambda(lambda t: t * float("nan"))(x)
        return keras.Model(inputs, layers.Activation("sigmoid")(x))


    @register("zz_two_units", description="Ends in two units instead of one.")
    def two_units(input_shape):
        inputs = keras.Input(shape=input_shape)
        outputs = layers.Dense(2, activation="softmax")(layers.Flatten()(inputs))
        return keras.Model(inputs, outputs)


    @register("zz_big", description="Runs out of (simulated) GPU memory above batch size 16.")
    def big(input_shape):
        return conv_net(input_shape, (8, 16), dense=16, name="zz_big")
""")


class ResourceExhaustedError(Exception):
    """Stands in for tf.errors.ResourceExhaustedError: the same name and message."""


def test_failures_are_isolated_and_out_of_memory_retries_with_half_the_batch(data, tmp_path, monkeypatch, capsys):
    module = tmp_path / "failing.py"
    module.write_text(FAILING)
    real_train_fold = benchmark.training.train_fold

    def train_fold(build, images, fold, settings, *args):
        if build.__name__ == "big" and settings.batch_size > 16:
            raise ResourceExhaustedError(f"OOM when allocating tensor with shape[{settings.batch_size},8,32,32]")
        return real_train_fold(build, images, fold, settings, *args)

    monkeypatch.setattr(benchmark.training, "train_fold", train_fold)
    code = main(argv(data, tmp_path, "baseline,zz_nan,zz_two_units,zz_big", "--arch-module", str(module)))
    err = capsys.readouterr().err
    assert code == 1  # some failed; the rest completed
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    status = {e["name"]: (e["status"], e.get("error", "")) for e in results["architectures"]}
    assert status["baseline"] == ("ok", "") and status["zz_big"] == ("ok", "")
    assert status["zz_nan"] == ("failed", "fold 1: training loss became NaN at epoch 1; lower --lr")
    assert (
        status["zz_two_units"][0] == "failed"
        and "output shape (None, 2), expected (None, 1)" in status["zz_two_units"][1]
    )
    assert err.count("out of memory at batch size 32; retrying once with 16") == 3  # once per fold
    for i in range(3):
        assert json.loads((out / "zz_big" / f"fold-{i}" / "metrics.json").read_text())["batch_size"] == 16
        assert json.loads((out / "baseline" / f"fold-{i}" / "metrics.json").read_text())["batch_size"] == 32
    board = (out / "leaderboard.md").read_text()
    report = (out / "report.html").read_text()
    for reason in ("training loss became NaN at epoch 1", "output shape (None, 2)"):
        assert reason in board and reason in report


def _tree(folder):
    """Every path under ``folder`` (links followed) with its size and modification time."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.stat(path)
            found[os.path.relpath(path, folder)] = (st.st_size, st.st_mtime_ns)
    return found


def test_odd_names_and_symlinked_folders_load_are_escaped_and_data_is_untouched(tmp_path, capsys):
    """Class folders named with markup and accents, one of them a symlink; file names with spaces
    and non-ASCII letters; Windows/macOS junk files; a test split for the held-out stage."""
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    normal, pneumonia = "NORMAL <b>&amp", "PNEUMONIA é"
    for split, n in (("train", 9), ("test", 3)):
        (data / split / normal).mkdir(parents=True)
        for i, f in enumerate(real_files(split, "NORMAL", n)):
            (data / split / normal / f"ñandú {i}.jpeg").symlink_to(f)
        (elsewhere / split).mkdir(parents=True)
        for i, f in enumerate(real_files(split, "PNEUMONIA", n)):
            (elsewhere / split / f"with space {i}.jpeg").symlink_to(f)
        (data / split / pneumonia).symlink_to(elsewhere / split, target_is_directory=True)
        for junk in ("Thumbs.db", "desktop.ini", ".DS_Store"):
            (data / split / normal / junk).write_bytes(b"junk")
    before = _tree(data)

    code = main(argv(data, tmp_path, "baseline", "--folds", "2", "--val-fraction", "0.25", "-q"))
    assert code == 0, capsys.readouterr().err
    assert _tree(data) == before  # nothing written, moved or touched inside --data
    out = tmp_path / "out"
    config = json.loads((out / "config.json").read_text())
    assert config["run"]["counts"] == {normal: 9, pneumonia: 9}
    assert config["run"]["classes"]["positive"] == pneumonia and config["run"]["skipped"] == {}
    paths = [p for fold in json.loads((out / "splits.json").read_text())["folds"] for p in fold["score"]]
    assert f"train/{normal}/ñandú 0.jpeg" in paths and f"train/{pneumonia}/with space 0.jpeg" in paths
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "NORMAL <b>" not in page and "NORMAL &lt;b&gt;&amp;amp" in page
    assert "PNEUMONIA é" in page  # non-ASCII shown as is (UTF-8)
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "NORMAL <b>" not in markdown and "NORMAL &lt;b&gt;&amp;amp" in markdown
    with np.load(out / "baseline" / "gradcam.npz") as panel:
        assert all(f"test/{normal}/" in p or f"test/{pneumonia}/" in p for p in panel["paths"])


def test_arch_module_with_a_syntax_error_names_the_file_and_line(data, tmp_path, capsys):
    module = tmp_path / "mine.py"
    module.write_text("from architectures import register\n\n@register('x')\ndef build(input_shape:\n    pass\n")
    assert main(argv(data, tmp_path, "baseline", "--arch-module", str(module))) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{module}: syntax error at line 4" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_an_unwritable_out_is_a_clear_error(data, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    args = argv(data, tmp_path, "baseline")
    args[args.index("--out") + 1] = str(blocker / "run")
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"--out {blocker / 'run'}: cannot create the run folder" in err and "writable folder" in err
