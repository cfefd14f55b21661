"""After the verdict, on a small real run: `benchmark predict` gives the fold ensemble of the run's own test
images exactly as the run saved them, decides at the out-of-fold threshold, skips what it cannot read, draws
heat maps; `evaluate` scores another site, `refit` trains on every training image, `export` writes one model;
each bad input is one paragraph."""

import json
import math
import shutil

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark.cli import main
from benchmark.data.images import discover, load_images
from benchmark.evaluation import read
from benchmark.store import RunFolder
from tests.conftest import link_kaggle_subset, spied

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("use")
    data = link_kaggle_subset(base / "data", {"NORMAL": 9, "PNEUMONIA": 15}, test_per_class=4, wrapper=False)
    out = base / "out"
    argv = ["run", "--data", str(data), "--out", str(out), "--cache-dir", str(base / "cache"), "--archs",
            "baseline,separable", "--folds", "2", "--epochs", "1", "--image-size", "32", "-q"]  # fmt: skip
    assert main(argv) == 0
    return {"data": data, "out": out, "base": base}


def refused(capsys, *argv) -> str:
    assert main([*map(str, argv)]) == 2
    err = capsys.readouterr().err  # a progress line (decoding ...) may come first
    assert err.count("error: ") == 1 and "Traceback" not in err
    return " ".join(err[err.index("error: ") :].split())


def test_predict_gives_the_runs_own_test_images_their_saved_fold_ensemble(run, tmp_path, capsys):
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(run["out"]), str(run["data"] / "test"), "--out", str(out)]) == 0
    said = capsys.readouterr().err
    results = read(RunFolder(run["out"]))
    winner = results.ok[0].name
    youden = next(t["threshold"] for t in results.oof_scores[winner]["thresholds"] if t["rule"] == "Youden")
    assert f"{winner}: the mean of 2 fold model(s) on 8 image(s); class by {youden:.4f} (Youden" in said
    saved = [pd.read_csv(results.folder.test_predictions(winner, i)) for i in range(2)]
    expected = pd.DataFrame(
        {
            "path": [str((run["data"] / p).absolute()) for p in saved[0].path],
            "probability": np.mean([s.probability for s in saved], axis=0),
            "std": np.std([s.probability for s in saved], axis=0),
        }
    )
    got = pd.read_csv(out).merge(expected, on="path")
    assert len(got) == 8
    np.testing.assert_allclose(got.probability_x, got.probability_y, atol=1e-6)
    np.testing.assert_allclose(got.probability_std, got["std"], atol=1e-6)
    classes = results.info.class_names
    assert list(got.predicted) == [classes[int(p >= youden)] for p in got.probability_y]


def test_predict_skips_what_it_cannot_read_and_draws_heat_maps(run, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    one = next(p for p in sorted((run["data"] / "test" / "PNEUMONIA").glob("person*.jpeg")))
    shutil.copy(one, images / "patient.jpeg")
    (images / "broken.png").write_bytes(b"not an image")
    heat = tmp_path / "heat"
    assert main(["predict", str(run["out"]), str(images), "--arch", "separable", "--gradcam", str(heat)]) == 0
    captured = capsys.readouterr()
    rows = pd.read_csv(pd.io.common.StringIO(captured.out))
    assert list(rows.path) == [str((images / "patient.jpeg").absolute())]
    assert f"skipped {(images / 'broken.png').absolute()}: " in captured.err
    (png,) = heat.iterdir()
    assert png.name == "00000_patient.png" and Image.open(png).size == (32, 32)


def test_bad_inputs_to_predict_are_one_paragraph_each(run, tmp_path, capsys):
    out, test = run["out"], run["data"] / "test"
    message = refused(capsys, "predict", out, test, "--arch", "nope")
    assert "--arch nope: not a finished architecture of the run" in message and "baseline" in message
    assert "--threshold 1.5: give f1, youden, 0.5 or a probability" in refused(
        capsys, "predict", out, test, "--threshold", "1.5"
    )
    (tmp_path / "empty").mkdir()
    assert "no image files found there" in refused(capsys, "predict", out, tmp_path / "empty")
    (tmp_path / "empty" / "broken.png").write_bytes(b"not an image")
    message = refused(capsys, "predict", out, tmp_path / "empty")
    assert "none of the 1 image file(s) could be read" in message and "broken.png: UnidentifiedImageError" in message
    unsaved = shutil.copytree(out, tmp_path / "unsaved")
    for model in unsaved.glob("*/fold-*/model.keras"):
        model.unlink()
    message = refused(capsys, "predict", unsaved, test)
    assert "fold models were not saved (--save-models none or --no-save-models)" in message
    assert "with --save-models all (or best)" in message
    (tmp_path / "taken.csv").write_text("mine")
    message = refused(capsys, "predict", out, test, "--out", tmp_path / "taken.csv")
    assert "exists" in message and (tmp_path / "taken.csv").read_text() == "mine"


def run_files(out) -> dict:
    """Every file of the run folder but the report's and the sites': path → bytes."""
    return {
        p: p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and p.name not in ("report.md", "report.html") and "report_files" not in p.parts
        and "sites" not in p.parts and not p.name.startswith(".lock")
    }  # fmt: skip


def test_evaluate_on_the_official_test_split_reproduces_the_held_out_section(run, capsys):
    before = run_files(run["out"])
    assert main(["evaluate", str(run["out"]), str(run["data"] / "test"), "--name", "official"]) == 0
    results = read(RunFolder(run["out"]))
    site = results.sites["official"]
    assert site["heldout"] == results.heldout and site["transfer"] == results.transfer
    assert site["counts"] == {"NORMAL": 4, "PNEUMONIA": 4} and site["data"]["split"] == "all images"
    assert run_files(run["out"]) == before  # nothing else of the run changed
    markdown = (run["out"] / "report.md").read_text()
    side = markdown[markdown.index("## 9. Held-out sets side by side") : markdown.index("## 10. External validation")]
    winner = results.ok[0].name
    f1 = results.heldout[winner]["ensemble"][0]
    assert f"{f1['metrics']['f1']:.3f} [{f1['ci']['f1'][0]:.3f}, {f1['ci']['f1'][1]:.3f}]" in side
    assert side.count(f"{f1['metrics']['f1']:.3f} [") == 2  # the test split and the site, side by side
    assert "On the held-out site official the CV winner" in markdown
    assert "site official: 8 images scored by 2 architecture(s)" in capsys.readouterr().out


def test_bad_inputs_to_evaluate_are_one_paragraph_each(run, tmp_path, capsys, synthetic_folder):
    out = run["out"]
    message = refused(capsys, "evaluate", out, run["data"] / "train")
    assert "are images the run cross-validated on" in message and "never trained on" in message
    other = synthetic_folder({"cats": 2, "dogs": 2}, split=None, root=tmp_path / "pets")
    message = refused(capsys, "evaluate", out, other)
    assert "its classes are cats, dogs; the run's are NORMAL, PNEUMONIA" in message
    (tmp_path / "nothing").mkdir()
    message = refused(capsys, "evaluate", out, tmp_path / "nothing")
    assert message.startswith(f"error: evaluate {tmp_path / 'nothing'}: no images found") and "--data" not in message
    assert main(["evaluate", str(out), str(run["data"]), "--name", "kaggle"]) == 0  # a Kaggle layout: its test/
    assert read(RunFolder(out)).sites["kaggle"]["data"]["split"] == "test/ split"
    # a copy that keeps the bytes, not the modification times: the same site, by content
    copy = shutil.copytree(run["data"], tmp_path / "copied", copy_function=shutil.copyfile)
    assert main(["evaluate", str(out), str(copy), "--name", "kaggle"]) == 0
    fewer = tmp_path / "fewer"
    for cls in ("NORMAL", "PNEUMONIA"):
        (fewer / cls).mkdir(parents=True)
        for image in sorted((run["data"] / "test" / cls).glob("[!.]*.jpeg"))[:2]:
            (fewer / cls / image.name).symlink_to(image)
    message = refused(capsys, "evaluate", out, fewer, "--name", "kaggle")
    assert "--name kaggle: the run folder already holds an evaluation of" in message


def test_the_python_api_predicts_and_evaluates_as_the_command_line_does(run):
    import benchmark

    results = benchmark.load(run["out"])
    frame = results.predict(run["data"] / "test")
    winner = results.architectures[0].name
    saved = [pd.read_csv(results.results.folder.test_predictions(winner, i)) for i in range(2)]
    expected = dict(zip([str((run["data"] / p).absolute()) for p in saved[0].path],
                        np.mean([s.probability for s in saved], axis=0), strict=True))  # fmt: skip
    np.testing.assert_allclose(frame.probability, [expected[p] for p in frame.path], atol=1e-6)
    site = results.evaluate(run["data"] / "test", name="from-python")
    assert results.sites["from-python"] == site and site["heldout"] == results.heldout


def test_export_writes_the_fold_ensemble_that_gives_the_runs_held_out_predictions(run, tmp_path, capsys):
    import json

    import onnxruntime

    results = read(RunFolder(run["out"]))
    winner = results.ok[0].name
    saved = [pd.read_csv(results.folder.test_predictions(winner, i)) for i in range(2)]
    ensemble = np.mean([s.probability for s in saved], axis=0)
    assert main(["export", str(run["out"]), "--format", "onnx", "--out", str(tmp_path / "onnx")]) == 0
    assert "checked: the exported model on the run's 8 test images" in capsys.readouterr().err
    card = json.loads((tmp_path / "onnx" / "model.json").read_text())
    assert card["check"]["largest_difference"] <= 1e-5 and card["classes"] == ["NORMAL", "PNEUMONIA"]
    assert card["thresholds"] == [{"rule": t["rule"], "threshold": t["threshold"]}
                                  for t in results.oof_scores[winner]["thresholds"]]  # fmt: skip
    assert card["input"]["shape"] == [None, 32, 32, 1] and card["input"]["dtype"] == "uint8"
    # run as a user runs it: the images decoded as the run decodes them, uint8 in, probabilities out
    from benchmark.data.images import decode

    pixels = np.stack([decode(run["data"] / p, 32, 1) for p in saved[0].path])
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    got = session.run(None, {"pixels": pixels})[0].reshape(-1)
    np.testing.assert_allclose(got, ensemble, atol=1e-5)
    assert main(["export", str(run["out"]), "--arch", "separable"]) == 0  # the default: RUN/export/ARCH
    assert (run["out"] / "export" / "separable" / "model.keras").is_file()
    assert "--out" in refused(capsys, "export", run["out"], "--arch", "separable")  # exists: not replaced


def test_an_export_without_its_packages_names_the_extra(run, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tf2onnx", None)  # as if not installed
    message = refused(capsys, "export", run["out"], "--format", "onnx")
    assert "--format onnx needs tf2onnx: pip install -e '.[export]'" in message


def test_the_model_card_names_the_transfer_verdict_and_the_versions(run, tmp_path, capsys):
    results = read(RunFolder(run["out"]))
    assert main(["card", str(run["out"])]) == 0
    card = capsys.readouterr().out
    winner, verdict = results.ok[0].name, results.transfer["verdict"]
    for title in ("Model details", "Intended use", "Data", "How it was chosen", "Held-out and external figures",
                  "Known limits", "Software"):  # fmt: skip
        assert f". {title}\n" in card
    assert card.startswith(f"# Model card — {winner}") and "NORMAL 9, PNEUMONIA 15" in card
    words = {"agree": "rankings agree", "disagree": "rankings DISAGREE", "unresolved": "does not resolve",
             "tied": "tied on one side"}[verdict]  # fmt: skip
    assert f"On the held-out test split the CV winner {winner}" in card and words in card
    assert f"keras {results.config['packages']['keras']}" in card and "Not for: diagnosis" in card
    assert main(["export", str(run["out"]), "--out", str(tmp_path / "model")]) == 0
    assert (tmp_path / "model" / "model_card.md").read_text() == card


def test_onnx_under_jax_is_refused_with_the_workaround():
    from benchmark import UsageError
    from benchmark.use import check_export_packages

    with pytest.raises(UsageError, match=r"--format onnx under JAX: .*KERAS_BACKEND=tensorflow.*--format keras"):
        check_export_packages("onnx", "jax")
    check_export_packages("keras", "jax")  # the .keras format needs nothing more


@pytest.fixture(scope="module")
def refitted(run, tmp_path_factory):
    """A copy of the run in which the winner's two folds were best at epochs 1 and 3 (as results.json records
    them), with its test split evaluated as a site, refitted twice with Model.fit spied on: the second call
    finds the refit saved."""
    out = tmp_path_factory.mktemp("refit") / "out"
    shutil.copytree(run["out"], out)
    assert main(["evaluate", str(out), str(run["data"] / "test"), "--name", "official"]) == 0
    saved = json.loads((out / "results.json").read_text())
    winner = saved["architectures"][0]
    winner["curves"]["best_epoch"] = [1, 3]
    (out / "results.json").write_text(json.dumps(saved))
    codes, calls = spied(lambda: [main(["refit", str(out)]) for _ in range(2)], "fit")
    return {"out": out, "winner": winner["name"], "fits": calls["fit"], "codes": codes}


def test_refit_trains_once_for_the_median_best_epoch_on_every_training_image(run, refitted):
    from benchmark.training.fit import Validate

    assert refitted["codes"] == [0, 0]
    (call,) = refitted["fits"]  # the rerun found the refit saved and trained nothing
    assert call["epochs"] == 2 and call["initial_epoch"] == 0  # the median of 1 and 3
    assert not any(isinstance(c, keras.callbacks.EarlyStopping | Validate) for c in call["callbacks"])
    dataset = discover(run["data"])
    images = load_images(dataset.root, dataset.train, 32, cache_dir=run["base"] / "cache", log=lambda m: None)
    assert sorted(map(bytes, call["x"])) == sorted(map(bytes, images.pixels))  # all 24 training images, once
    assert call["class_weight"] == {0: pytest.approx(24 / 18), 1: pytest.approx(24 / 30)}  # of all of them
    folder = refitted["out"] / refitted["winner"] / "refit"
    record = json.loads((folder / "refit.json").read_text())
    assert record["epochs"] == 2 and record["best_epochs"] == [1, 3] and record["n_images"] == 24
    assert record["initial_bias"] == pytest.approx(math.log(15 / 9))  # the output bias of all 24
    assert len(pd.read_csv(folder / "history.csv")) == 2


def test_the_refit_predicts_exports_and_stands_beside_the_fold_ensemble_in_the_report(refitted, run, tmp_path):
    out, winner = refitted["out"], refitted["winner"]
    saved = pd.read_csv(out / winner / "refit" / "test_predictions.csv")
    assert (
        main(["predict", str(out), str(run["data"] / "test"), "--model", "refit", "--out", str(tmp_path / "p.csv")])
        == 0
    )
    got = pd.read_csv(tmp_path / "p.csv").set_index("path").probability
    expected = [got[str((run["data"] / p).absolute())] for p in saved.path]
    np.testing.assert_allclose(expected, saved.probability, atol=1e-6)
    assert "probability_std" not in pd.read_csv(tmp_path / "p.csv")  # one model: no spread to show
    results = read(RunFolder(out))
    refit = results.refits[winner]
    versus = refit["against_folds"]
    assert versus["refit"] == pytest.approx(refit["heldout"][0]["metrics"][results.rank_by])
    assert versus["folds"] == pytest.approx(results.heldout[winner]["ensemble"][0]["metrics"][results.rank_by])
    markdown = (out / "report.md").read_text()
    section = markdown[markdown.index("Refit on all training images") :]
    first = refit["heldout"][0]
    for where in ("test split", "site official"):
        assert f"| {winner} | {where} | refit | 0.500 | {first['metrics']['accuracy']:.3f} [" in " ".join(
            section.split()
        )
    assert f"difference {versus['difference']:+.3f}" in section
    # the site evaluated before the refit is scored by it too: the same images as the test split, the same numbers
    assert results.sites["official"]["refits"][winner] == {k: refit[k] for k in ("heldout", "against_folds")}
    assert main(["export", str(out), "--model", "refit"]) == 0
    description = json.loads((out / "export" / f"{winner}-refit" / "model.json").read_text())
    assert description["model"] == "refit on all training images" and description["check"]["largest_difference"] <= 1e-5
    assert (
        "The model is the refit: trained once on all 24"
        in (out / "export" / f"{winner}-refit" / "model_card.md").read_text()
    )


def test_bad_inputs_to_refit_are_one_paragraph_each(run, tmp_path, capsys):
    message = refused(capsys, "predict", run["out"], run["data"] / "test", "--model", "refit")
    assert "has not been refitted" in message and "benchmark refit" in message
    out = tmp_path / "out"
    shutil.copytree(run["out"], out)
    config = json.loads((out / "config.json").read_text())
    fewer = link_kaggle_subset(tmp_path / "data", {"NORMAL": 8, "PNEUMONIA": 15}, test_per_class=4, wrapper=False)
    config["settings"]["data"] = str(fewer)
    (out / "config.json").write_text(json.dumps(config))
    message = refused(capsys, "refit", out)
    assert "not those the run cross-validated on (1 of the run's missing or unreadable, 0 new" in message
    assert not (out / read(RunFolder(out)).ok[0].name / "refit").exists()
    assert "--arch" in refused(capsys, "refit", run["out"], "--arch", "nope")


def test_a_refit_that_fails_keeps_its_traceback_and_leaves_no_refit(run, tmp_path, capsys, monkeypatch):
    from benchmark.training import fit

    out = tmp_path / "out"
    shutil.copytree(run["out"], out)

    def fails(*args, **kwargs):
        raise RuntimeError("the refit's own failure")

    monkeypatch.setattr(fit, "train_fold", fails)
    assert main(["refit", str(out)]) == 1
    err = " ".join(capsys.readouterr().err.split())
    winner = read(RunFolder(out)).ok[0].name
    assert f"error: {winner}: the refit failed: RuntimeError: the refit's own failure (traceback: " in err
    assert "Traceback (most recent call last)" in (out / winner / "refit" / "error.txt").read_text()
    assert sorted(p.name for p in (out / winner / "refit").iterdir()) == ["error.txt"]  # no model, no refit.json
