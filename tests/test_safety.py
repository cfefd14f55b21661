"""Nothing lost, nothing wrong (issue 21): --out and --overwrite never touch a user's files or the data,
one failing architecture never stops the others, and damaged run files are one paragraph, not a traceback.

The data here are real chest X-rays copied (not linked) into a temporary folder, so that every byte of
the images can be checked after each attempt."""

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import pytest

import architectures
import benchmark
from benchmark.cli import main
from benchmark.store.runfolder import RunFolder
from tests.conftest import ROOT, real_files

pytestmark = pytest.mark.realdata

TINY = ["--folds", "2", "--epochs", "1", "--image-size", "32", "--batch-size", "16", "--gradcam-archs", "none", "-q"]


def copy_kaggle(dest: Path, per_class: int = 12, test_per_class: int = 2) -> Path:
    """A Kaggle-layout folder of real images, copied."""
    for split, n in (("train", per_class), ("test", test_per_class)):
        for cls in ("NORMAL", "PNEUMONIA"):
            (dest / split / cls).mkdir(parents=True)
            for f in real_files(split, cls, n):
                shutil.copyfile(f, dest / split / cls / f.name)
    return dest


def digests(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder``: its SHA-256, or "dir"."""
    return {
        str(p.relative_to(folder)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
    }


def one_paragraph(err: str) -> str:
    assert "Traceback" not in err and err.startswith("error: ")
    return " ".join(err.split())


@pytest.fixture
def data(tmp_path):
    return copy_kaggle(tmp_path / "data")


def run_args(data, out, *extra, cache=None):
    return ["run", "--data", str(data), "--out", str(out), "--cache-dir", str(cache or data.parent / "cache"),
            "--archs", "baseline", *TINY, *extra]  # fmt: skip


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_that_is_not_a_run_folder_is_refused_and_left_as_it_was(data, tmp_path, capsys, overwrite):
    user = tmp_path / "userdir"
    (user / "sub").mkdir(parents=True)
    (user / "thesis.tex").write_text("\\chapter{Results}\n")
    (user / "sub" / "results.csv").write_text("a,b\n1,2\n")
    (user / "config.json").write_text('{"theme": "dark"}')  # a config.json that is not a run's
    before = digests(user), digests(data)
    assert main(run_args(data, user, *(["--overwrite"] if overwrite else []))) == 2
    err = one_paragraph(capsys.readouterr().err)
    assert f"--out {user} is not empty and is not a run folder" in err
    assert "config.json, sub, thesis.tex" in err and "Choose a new or empty folder" in err
    assert ("--overwrite removes only a run folder's own files" in err) == overwrite
    assert (digests(user), digests(data)) == before  # byte for byte, nothing added


def test_out_inside_or_equal_to_data_or_holding_it_is_refused_before_anything_is_written(data, tmp_path, capsys):
    (tmp_path / "link").symlink_to(data / "train")  # symlinks are followed
    before = digests(data)
    cases = [
        (run_args(data, data, "--overwrite"), f"--out {data} is --data itself"),
        (run_args(data, data / "train" / "run1"), f"--out {data / 'train' / 'run1'} is inside --data {data}"),
        (run_args(data, tmp_path / "link" / "run1"), f"--out {data / 'train' / 'run1'} is inside --data {data}"),
        (run_args(data, tmp_path / "out", cache=data / "cache"), f"--cache-dir {data / 'cache'} is inside --data"),
        (run_args(data, tmp_path, "--overwrite"), f"--data {data} is inside --out {tmp_path}"),
    ]
    for args, said in cases:
        assert main(args) == 2, args
        err = one_paragraph(capsys.readouterr().err)
        assert said in err, err
        assert digests(data) == before  # every image byte for byte, nothing added
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_overwrite_removes_the_runs_own_files_and_nothing_else(data, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(run_args(data, out)) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["format"] == "cnn-benchmark run folder 1"
    mine = {out / "notes.md": "my", out / "baseline" / "why.txt": "kept", out / "report_files" / "a" / "b.png": "x"}
    for path, text in mine.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    stale = out / "old_arch" / "fold-0" / "metrics.json"  # a fold of an architecture this run no longer has
    stale.parent.mkdir(parents=True)
    shutil.copyfile(out / "baseline" / "fold-0" / "metrics.json", stale)
    before = digests(data)

    assert main(run_args(data, out, "--overwrite", "--epochs", "2")) == 0
    assert all(path.read_text() == text for path, text in mine.items())  # the user's files, as they were
    assert not (out / "old_arch").exists()  # the tool's own files, and the folders they leave empty, are gone
    assert json.loads((out / "baseline" / "fold-1" / "metrics.json").read_text())["epochs"] == 2
    assert json.loads((out / "config.json").read_text())["settings"]["epochs"] == 2
    assert digests(data) == before


def test_a_run_interrupted_before_its_first_fold_is_still_a_run_folder(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("benchmark.runner.load_images", stopped)  # Ctrl-C while the images decode
    assert main(run_args(data, out)) == 130
    assert json.loads((out / "config.json").read_text())["format"] == "cnn-benchmark run folder 1"
    monkeypatch.undo()
    assert main(run_args(data, out)) == 0  # resumed, not refused as a foreign folder


FAILING = """
import keras
from architectures import register

@register("aa_text", description="Returns a string instead of a model.")
def text(input_shape):
    return "not a model"
"""


def test_a_failing_first_architecture_does_not_stop_the_others_and_the_report_is_written(data, tmp_path, capsys):
    module = tmp_path / "failing.py"
    module.write_text(FAILING)
    out = tmp_path / "out"
    args = [*run_args(data, out), "--archs", "aa_text,baseline", "--arch-module", str(module)]
    for _ in range(2):  # a rerun retries the failed one and reports again
        assert main(args) == 1
        capsys.readouterr()
        results = json.loads((out / "results.json").read_text())
        status = {e["name"]: e["status"] for e in results["architectures"]}
        assert status == {"baseline": "ok", "aa_text": "failed"}
        failed = next(e for e in results["architectures"] if e["name"] == "aa_text")
        assert failed["error"].startswith("fold 1: ") and "str" in failed["error"]
        assert failed["error"] in (out / "report.md").read_text()
        assert len(list((out / "baseline").glob("fold-*/metrics.json"))) == 2
    assert main(["report", str(out)]) == 0


def test_every_architecture_failing_is_one_paragraph_and_still_a_report(data, tmp_path, capsys):
    out = tmp_path / "out"
    args = [*run_args(data, out), "--archs", "baseline,pyramid_up", "--image-size", "5"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "\x1b[" not in err
    paragraph = " ".join(err[err.index("error: every architecture failed") :].split())
    assert "baseline: fold 1: build failed" in paragraph and "pyramid_up: fold 1: build failed" in paragraph
    assert f"The reasons are in {out / 'report.md'}" in paragraph
    assert (out / "report.md").exists() and (out / "report.html").exists()
    with warnings.catch_warnings(record=True) as caught:  # no empty plot (matplotlib warned about each)
        warnings.simplefilter("always")
        assert main(["report", str(out)]) == 0
    assert not [w for w in caught if "benchmark" in w.filename], [str(w.message) for w in caught]
    assert "## 5. Loss curves" not in (out / "report.md").read_text()


@pytest.mark.parametrize("flag", ["--lr", "--val-fraction", "--label-smoothing", "--lr-decay-epochs"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_numbers_are_refused_before_anything_is_written(data, tmp_path, capsys, flag, value):
    assert main([*run_args(data, tmp_path / "out"), f"{flag}={value}"]) == 2
    assert one_paragraph(capsys.readouterr().err) == f"error: {flag} {value}: give a finite number."
    assert not (tmp_path / "out").exists()
    with pytest.raises(benchmark.UsageError, match="give a finite number"):
        benchmark.run(data, tmp_path / "out", **{flag[2:].replace("-", "_"): float(value)})


def test_a_name_that_cannot_name_a_model_is_refused_at_registration(data, tmp_path, capsys):
    registry = architectures.Registry()
    for bad, suggested in (("my arch", "my_arch"), ("a,b", "a_b"), ("-x", "x")):
        with pytest.raises(architectures.RegistryError, match=f"e.g. '{suggested}'"):
            registry.register(bad)(lambda input_shape: None)
    module = tmp_path / "mine.py"
    module.write_text('from architectures import register\n\n@register("my arch")\ndef mine(input_shape):\n    pass\n')
    assert main([*run_args(data, tmp_path / "out"), "--arch-module", str(module)]) == 2
    err = one_paragraph(capsys.readouterr().err)
    assert f"({module}: RegistryError at line 3)" in err and "architecture name 'my arch'" in err
    assert not (tmp_path / "out").exists()


BAD_FILES = [
    ("results.json", "[]", "a JSON list, not an object"),
    ("results.json", "{}", "no 'run' object"),
    ("results.json", '{"run": {"folds": 2}, "architectures": []}', "its 'run' lacks classes, rank_by"),
    ("results.json", None, "its 'architectures' is not a list of entries"),
    ("folds.csv", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "cannot be read as a table"),
    ("folds.csv", "x,y\n1,2\n", "no column arch, fold"),
    ("oof.csv", "arch,fold,path\nbaseline,0,a.jpeg\n", "no column label"),
]


@pytest.mark.parametrize(("name", "content", "said"), BAD_FILES)
def test_a_damaged_run_file_is_one_paragraph_in_report_and_load(tmp_path, capsys, name, content, said):
    run = tmp_path / "run"
    shutil.copytree(ROOT / "tests" / "fixtures" / "run", run)
    if content is None:  # valid JSON, the right keys, a wrong value
        results = json.loads((run / name).read_text())
        content = json.dumps({**results, "architectures": 3})
    (run / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(["report", str(run)]) == 2
    err = one_paragraph(capsys.readouterr().err)
    assert err.startswith(f"error: {run / name}: ") and said in err
    assert f"Rerun the run's `benchmark run` command with --out {run}" in err
    with pytest.raises(benchmark.UsageError, match=said):
        benchmark.load(run)


def test_a_run_with_no_finished_fold_reads_back_empty_tables(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(ROOT / "tests" / "fixtures" / "run", run)
    (run / "folds.csv").write_text("\n")  # what a run whose every fold failed wrote
    (run / "oof.csv").unlink()
    saved = RunFolder(run).read_results()
    assert saved["folds"].empty and list(saved["oof"].columns) == ["arch", "fold", "path", "label"]


def test_a_read_only_run_folder_is_one_paragraph(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(ROOT / "tests" / "fixtures" / "run", run)

    def denied(path, *args, **kwargs):  # what a folder without write permission answers (root ignores chmod)
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("benchmark.report.document.write_text", denied)
    assert main(["report", str(run)]) == 2
    err = one_paragraph(capsys.readouterr().err)
    assert f"{run}: cannot write the report there (Permission denied: {run / 'report.md'})" in err
