"""Reliability on the real chest X-rays: a full disk, failures isolated (build, output shape, NaN,
out of memory), odd folder and file names, the data folder left untouched, bad --arch-module/--out.

(Crash/resume, the run-folder lock and Ctrl-C are in test_end_to_end.py.)"""

import errno
import json
import os
import shutil
import textwrap

import numpy as np
import pandas as pd
import pytest

import benchmark.training
from benchmark.cli import main
from benchmark.store.files import write_text
from tests.conftest import link_kaggle_subset, real_files

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

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


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])  # a full disk; the folder made unwritable mid-run
def test_a_failed_write_mid_run_stops_clearly_and_a_rerun_resumes(data, tmp_path, monkeypatch, capsys, code):
    """The write of fold 2's history.csv fails when its temporary file is flushed to disk."""
    real_fsync, failed = os.fsync, []

    def fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if "/fold-1/.history.csv." in path:
            failed.append(path)
            raise OSError(code, os.strerror(code), path)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    args = argv(data, tmp_path, "baseline", "--folds", "2")
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert os.strerror(code) in err and "fold-1/.history.csv." in err and "Traceback" not in err
    assert f"rerun the same command with --out {tmp_path / 'out'}" in err
    out = tmp_path / "out"
    assert len(failed) == 1 and not os.path.exists(failed[0])  # the temporary file existed, and is gone
    assert json.loads((out / "baseline" / "fold-0" / "metrics.json").read_text())["fold"] == 0
    assert not (out / "baseline" / "fold-1" / "history.csv").exists()
    assert not (out / "baseline" / "fold-1" / "metrics.json").exists()
    assert no_temporary_files(out) == []  # no half-written file, and the lock is released

    monkeypatch.setattr(os, "fsync", real_fsync)  # space freed, permissions back
    assert main(args) == 0
    assert capsys.readouterr().err.count("(saved)") == 1  # fold 0 was not retrained
    assert len(json.loads((out / "results.json").read_text())["architectures"][0]["metrics"]["f1"]["folds"]) == 2


def test_truncated_fold_files_are_redone_and_overwrite_starts_afresh(data, tmp_path, capsys):
    args = argv(data, tmp_path, "baseline", "--no-save-models")
    assert main(args) == 0
    out = tmp_path / "out" / "baseline"
    kept = (out / "fold-0" / "metrics.json").read_text()
    history = out / "fold-1" / "history.csv"
    history.write_text(history.read_text()[:12])  # cut mid-row
    metrics = out / "fold-2" / "metrics.json"
    metrics.write_text(metrics.read_text()[:30])  # cut mid-object
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "baseline fold 1/3  (saved)" in err and err.count("(saved)") == 1  # folds 2 and 3 trained again
    assert (out / "fold-0" / "metrics.json").read_text() == kept
    assert json.loads(metrics.read_text())["fold"] == 2 and len(pd.read_csv(history)) >= 1

    assert main([*args, "--epochs", "2"]) == 2  # other settings: refused ...
    assert "epochs (1 → 2)" in capsys.readouterr().err
    (out / "mine.txt").write_text("the user's")
    assert main([*args, "--epochs", "2", "--overwrite"]) == 0  # ... unless --overwrite: every fold trained anew
    assert "(saved)" not in capsys.readouterr().err and (out / "mine.txt").read_text() == "the user's"
    assert all(json.loads((out / f"fold-{i}" / "metrics.json").read_text())["epochs"] <= 2 for i in range(3))
    assert json.loads((tmp_path / "out" / "config.json").read_text())["settings"]["epochs"] == 2


def test_strict_makes_an_unreadable_image_an_error(tmp_path, capsys):
    data = link_kaggle_subset(tmp_path / "data", {"NORMAL": 12, "PNEUMONIA": 12}, wrapper=False)
    (data / "train" / "NORMAL" / "notes.jpeg").write_text("not an image")
    assert main(argv(data, tmp_path, "baseline", "--strict")) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "1 image(s) could not be read: train/NORMAL/notes.jpeg (UnidentifiedImageError" in err
    assert "drop --strict to skip them" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "baseline").exists()  # nothing trained


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
    real_train_fold = benchmark.training.fit.train_fold

    def train_fold(build, images, fold, settings, *args, **kwargs):
        if build.__name__ == "big" and settings.batch_size > 16:
            raise ResourceExhaustedError(f"OOM when allocating tensor with shape[{settings.batch_size},8,32,32]")
        return real_train_fold(build, images, fold, settings, *args, **kwargs)

    monkeypatch.setattr(benchmark.training.fit, "train_fold", train_fold)
    code = main(
        argv(data, tmp_path, "baseline,zz_nan,zz_two_units,zz_big", "--arch-module", str(module), "--folds", "2")
    )
    err = capsys.readouterr().err
    assert code == 1  # some failed; the rest completed
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    status = {e["name"]: (e["status"], e.get("error", "")) for e in results["architectures"]}
    assert status["baseline"] == ("ok", "") and status["zz_big"] == ("ok", "")
    assert status["zz_nan"][0] == "failed" and status["zz_nan"][1].startswith(
        "fold 1: the untrained model's output is not finite"
    )
    assert (
        status["zz_two_units"][0] == "failed"
        and "output shape (None, 2), expected (None, 1)" in status["zz_two_units"][1]
    )
    assert err.count("out of memory at batch size 32; retrying once with 16") == 2  # once per fold
    for i in range(2):
        assert json.loads((out / "zz_big" / f"fold-{i}" / "metrics.json").read_text())["batch_size"] == 16
        assert json.loads((out / "baseline" / f"fold-{i}" / "metrics.json").read_text())["batch_size"] == 32
    board = (out / "leaderboard.md").read_text()
    report = (out / "report.html").read_text()
    markdown = (out / "report.md").read_text()
    for reason in ("output is not finite (NaN or infinity", "output shape (None, 2)"):
        assert reason in board and reason in report and reason in markdown


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


def test_resume_follows_the_data_not_its_spelling(tmp_path, monkeypatch, capsys):
    data = link_kaggle_subset(tmp_path / "data", {"NORMAL": 12, "PNEUMONIA": 12}, wrapper=False)
    args = argv(data.resolve(), tmp_path, "baseline", "--folds", "2", "--no-save-models", "-q")
    assert main(args) == 0
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["data"]["path"] == str(data.resolve()) and config["data"]["files"] == 24
    assert len(config["data"]["fingerprint"]) == 24
    (tmp_path / "link").symlink_to(data)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "moved").mkdir()
    for spelling in ("data", "link", "moved/data"):  # relative, through a link, after a move
        if spelling == "moved/data":
            data.rename(tmp_path / "moved" / "data")
        args[args.index("--data") + 1] = spelling
        capsys.readouterr()
        assert main([a for a in args if a != "-q"]) == 0, capsys.readouterr().err
        assert capsys.readouterr().err.count("(saved)") == 2  # resumed: both folds loaded, none retrained

    # A copy that keeps the bytes but not the modification times (cp without -p): resumed, by content.
    copy = shutil.copytree(tmp_path / "moved" / "data", tmp_path / "copy", copy_function=shutil.copyfile)
    args[args.index("--data") + 1] = "copy"
    assert main([a for a in args if a != "-q"]) == 0, capsys.readouterr().err
    assert capsys.readouterr().err.count("(saved)") == 2
    # The same size and a new time, but other bytes: refused.
    first = copy / "train" / "NORMAL" / real_files("train", "NORMAL", 1)[0].name
    changed = bytearray(first.read_bytes())
    changed[len(changed) // 2] ^= 0xFF
    first.write_bytes(bytes(changed))
    assert main(args) == 2
    assert "0 added, 0 removed, 1 changed file(s)" in " ".join(capsys.readouterr().err.split())

    args[args.index("--data") + 1] = "moved/data"
    moved = tmp_path / "moved" / "data"
    (moved / "train" / "NORMAL" / real_files("train", "NORMAL", 1)[0].name).unlink()
    (moved / "train" / "NORMAL" / "new.jpeg").symlink_to(real_files("train", "NORMAL", 13)[-1])
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"--out {tmp_path / 'out'} holds a run on other data than --data moved/data: 1 added, 1 removed, " in err
    assert "0 changed file(s) (e.g. added: train/NORMAL/new.jpeg)" in err


def test_a_full_cache_disk_exits_2_and_the_rerun_works(data, tmp_path, monkeypatch, capsys):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    args = argv(data, tmp_path, "baseline", "--folds", "2", "--no-save-models", "-q")
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"--cache-dir {tmp_path / 'cache'}: could not write the decoded-image cache (No space left" in err
    assert "Traceback" not in err and [p.suffix for p in (tmp_path / "cache").iterdir()] == [".lock"]
    monkeypatch.undo()
    assert main(args) == 0


def test_a_read_only_data_folder_works_and_nothing_is_written_there(data, tmp_path, monkeypatch):
    """As on a read-only mount: every attempt to create, change or remove anything under --data fails."""
    root = os.path.realpath(data)

    def inside(path) -> bool:
        return isinstance(path, (str, os.PathLike)) and os.path.realpath(path).startswith(root + os.sep)

    def read_only(real, write_mode):
        def guarded(path, *args, **kwargs):
            if inside(path) and write_mode(*args, **kwargs):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return real(path, *args, **kwargs)

        return guarded

    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    monkeypatch.setattr(os, "open", read_only(os.open, lambda flags, *a, **k: flags & writes))
    monkeypatch.setattr("builtins.open", read_only(open, lambda mode="r", *a, **k: set(mode) & set("wax+")))
    for name in ("mkdir", "makedirs", "replace", "rename", "unlink", "remove", "rmdir", "link", "symlink"):
        monkeypatch.setattr(os, name, read_only(getattr(os, name), lambda *a, **k: True))
    assert main(argv(data, tmp_path, "baseline", "--folds", "2", "-q")) == 0
