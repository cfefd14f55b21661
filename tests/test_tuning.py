"""--tune on real images: every trial fits the fold's fit part and is judged on its inner split, never on the
score fold; the fold keeps the trial with the lowest saved inner loss; every architecture gets the same trials;
a killed run redoes only the trial it was in; a malformed --tune is one paragraph."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

import benchmark
from benchmark.cli import main
from benchmark.data.images import discover, load_images
from tests.conftest import link_kaggle_subset, spied

pytestmark = [pytest.mark.slow, pytest.mark.realdata]
TUNE = "lr=1e-3,3e-3"  # trial 0 is the default recipe
SETTINGS = {"folds": 2, "epochs": 1, "image_size": 32, "deterministic": True, "gradcam_archs": "none", "quiet": True}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return link_kaggle_subset(tmp_path_factory.mktemp("tune"), {"NORMAL": 12, "PNEUMONIA": 18}, test_per_class=3)


@pytest.fixture(scope="module")
def tuned(data, tmp_path_factory):
    base = tmp_path_factory.mktemp("tuned")
    tracking = {"tensorboard": True, "track": "mlflow", "tracking_uri": f"sqlite:///{base / 'mlflow.db'}"}
    kwargs = {**SETTINGS, "cache_dir": base / "cache", "archs": "baseline,baseline_dropout", **tracking}
    run = lambda: benchmark.run(data, base / "out", tune=TUNE, **kwargs)  # noqa: E731
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(base)  # MLflow's SQLite store keeps its artifacts in ./mlruns
        results, calls = spied(run, "fit", "evaluate", "predict")
    untuned = benchmark.run(data, base / "untuned", archs="baseline", **{**SETTINGS, "cache_dir": base / "cache"})
    return {"results": results, "calls": calls, "out": base / "out", "untuned": untuned, "cache": base / "cache",
            "mlflow": tracking["tracking_uri"]}  # fmt: skip


def pixels_of(data, cache, paths):
    dataset = discover(data)
    images = load_images(dataset.root, dataset.train, 32, cache_dir=cache, log=lambda m: None)
    row = {p: i for i, p in enumerate(images.paths)}
    return {bytes(images.pixels[row[p]]) for p in paths}


def test_no_trial_fits_or_is_judged_on_an_outer_score_fold_image(data, tuned):
    splits = json.loads((tuned["out"] / "splits.json").read_text())["folds"]
    fits, evaluations = ([np.asarray(c["x"]) for c in tuned["calls"][m]] for m in ("fit", "evaluate"))
    assert len(fits) == 2 * 2 * 2  # architectures × folds × trials, in that order; nothing else is fitted
    for k, x in enumerate(fits):
        fold = splits[(k // 2) % 2]
        fit, score = (pixels_of(data, tuned["cache"], fold[part]) for part in ("train", "score"))
        assert set(map(bytes, x)) == fit and not set(map(bytes, x)) & score
    assert len(evaluations) == len(fits)  # Validate scores the inner split after the (one) epoch
    for k, x in enumerate(evaluations):
        fold = splits[(k // 2) % 2]
        assert set(map(bytes, x)) == pixels_of(data, tuned["cache"], fold["val"])
    for fold in splits:  # the score fold is predicted once per architecture: by the kept trial's model
        score = pixels_of(data, tuned["cache"], fold["score"])
        assert sum(set(map(bytes, np.asarray(c["x"]))) == score for c in tuned["calls"]["predict"]) == 2


def test_each_fold_keeps_the_trial_with_the_lowest_saved_inner_loss(tuned):
    out = tuned["out"]
    for arch in ("baseline", "baseline_dropout"):
        for i in range(2):
            fold = out / arch / f"fold-{i}"
            losses = [pd.read_csv(fold / "trials" / f"trial-{t}" / "history.csv").val_loss.min() for t in range(2)]
            record = json.loads((fold / "metrics.json").read_text())
            assert record["tuning"]["chosen"] == int(np.argmin(losses))
            assert record["tuning"]["inner_loss"] == pytest.approx(losses)
            chosen = pd.read_csv(fold / "trials" / f"trial-{record['tuning']['chosen']}" / "history.csv")
            pd.testing.assert_frame_equal(pd.read_csv(fold / "history.csv"), chosen)  # its model is the fold's
            assert not list((fold / "trials").glob("*/model.keras"))  # the trials' models are not kept


def test_every_architecture_gets_the_same_trials_and_trial_0_is_the_untuned_training(tuned):
    out = tuned["out"]
    values = {
        (arch, i, t): json.loads((out / arch / f"fold-{i}" / "trials" / f"trial-{t}" / "record.json").read_text())
        for arch in ("baseline", "baseline_dropout")
        for i in range(2)
        for t in range(2)
    }
    assert {(k[2], json.dumps(v["values"])) for k, v in values.items()} == {(0, '{"lr": 0.001}'), (1, '{"lr": 0.003}')}
    assert all(v["saw"] == {"fit": f"splits.json folds[{i}].train", "inner validation": f"splits.json folds[{i}].val"}
               for (_, i, _), v in values.items())  # fmt: skip
    for i in range(2):  # the default recipe as a trial trains exactly as the untuned run's fold
        trial = pd.read_csv(out / "baseline" / f"fold-{i}" / "trials" / "trial-0" / "history.csv")
        pd.testing.assert_frame_equal(
            trial, pd.read_csv(tuned["untuned"].path / "baseline" / f"fold-{i}" / "history.csv")
        )
    tuning = tuned["results"].architectures[0].tuning
    assert (
        tuning["trainings"] == 4 and len(tuning["budget"]) == 2 and tuning["trials"] == [{"lr": 0.001}, {"lr": 0.003}]
    )
    report = (out / "report.md").read_text()
    assert "Equal tuning" in report and "report_files/tuning_budget.png" in report
    for t in (1, 2):  # TensorBoard: each trial's curves and HParams session inside its fold's (numbered from 1)
        assert list((out / "tensorboard" / "baseline" / "fold-1" / f"trial-{t}").glob("events.out.tfevents.*"))


def test_mlflow_nests_each_trial_under_its_fold(tuned):
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=tuned["mlflow"])
    state = json.loads((tuned["out"] / "tracking.json").read_text())
    # the second trial (lr 0.003) of every fold: trials and folds are numbered from 1 in MLflow
    runs = client.search_runs([client.get_experiment_by_name("cnn-benchmark").experiment_id], "tags.trial = '2'")
    assert len(runs) == 2 * 2  # architectures × folds
    for run in runs:
        arch, fold = run.data.tags["architecture"], int(run.data.tags["fold"]) - 1
        assert run.data.tags["mlflow.parentRunId"] == state["folds"][f"{arch}/{fold}"]
        record = json.loads((tuned["out"] / arch / f"fold-{fold}" / "metrics.json").read_text())
        assert run.data.params["lr"] == "0.003" and run.data.metrics["inner_loss"] == pytest.approx(
            record["tuning"]["inner_loss"][1]
        )


def test_the_refit_of_a_tuned_architecture_trains_with_the_values_its_folds_chose(tuned, tmp_path, capsys):
    """A copy of the run whose baseline folds both chose trial 1 (lr 3e-3, not the default 1e-3), as results.json
    records them: its refit trains with that lr, and its refit.json, log line and model card name it."""
    from benchmark.training import execution

    out = tmp_path / "out"
    shutil.copytree(tuned["out"], out)
    saved = json.loads((out / "results.json").read_text())
    (entry,) = [a for a in saved["architectures"] if a["name"] == "baseline"]
    entry["tuning"]["chosen"] = [1, 1]
    (out / "results.json").write_text(json.dumps(saved))
    tasks, real = [], execution.run_fold
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(execution, "run_fold", lambda task, *args: tasks.append(task) or real(task, *args))
        assert main(["refit", str(out), "--arch", "baseline"]) == 0
    (task,) = tasks
    assert task.settings.lr == 3e-3 and task.settings.epochs == 1
    assert json.loads((out / "baseline" / "refit" / "refit.json").read_text())["tuned"] == {"lr": 3e-3}
    said = capsys.readouterr()
    assert "for 1 epoch (the median of its folds' best epochs 1, 1), with lr 0.003" in said.err  # the log
    assert "baseline: refitted on 30 images for 1 epoch;" in said.out
    assert main(["card", str(out), "--arch", "baseline", "--model", "refit", "--out", str(tmp_path / "card.md")]) == 0
    card = " ".join((tmp_path / "card.md").read_text().split())
    assert "for 1 epoch (the median of its 2 fold models' best epochs), with the tuned values its folds chose " \
        "most often (lr 0.003)," in card  # fmt: skip


def test_a_run_killed_mid_trial_redoes_only_that_trial_and_a_failing_trial_is_recorded(data, tmp_path, monkeypatch):
    """Killed in the last trial, the rerun trains that trial alone; when it fails there, its traceback is kept
    and the fold keeps the best of the others."""
    from benchmark.training import fit

    epochs = []

    def kill_in_the_last_trial(event):
        if event["event"] == "epoch":
            epochs.append(event)
            if len(epochs) == 4:  # 2 folds × 2 trials × 1 epoch: the last trial's epoch
                raise KeyboardInterrupt

    kwargs = {**SETTINGS, "cache_dir": tmp_path / "cache", "archs": "baseline", "tune": TUNE}
    with pytest.raises(KeyboardInterrupt):
        benchmark.run(data, tmp_path / "out", progress=kill_in_the_last_trial, **kwargs)
    trials = tmp_path / "out" / "baseline" / "fold-1" / "trials"
    assert (trials / "trial-0" / "record.json").exists() and not (trials / "trial-1").exists()
    attempts = []

    def fails(build, images, fold, settings, *args, **kwargs):
        attempts.append((len(fold.train), settings.lr))
        raise RuntimeError("this trial's own failure")

    monkeypatch.setattr(fit, "train_fold", fails)
    results = benchmark.run(data, tmp_path / "out", **kwargs)
    splits = json.loads((tmp_path / "out" / "splits.json").read_text())["folds"]
    assert attempts == [(len(splits[1]["train"]), 3e-3)]  # trial 2 of fold 2, and nothing else
    assert "RuntimeError: this trial's own failure" in (trials / "trial-1" / "error.txt").read_text()
    record = json.loads((trials.parent / "metrics.json").read_text())
    assert results.status == 0 and record["tuning"]["chosen"] == 0 and record["tuning"]["inner_loss"][1] is None


@pytest.mark.parametrize(
    "spec, said",
    [
        ("depth=3,4", "'depth' is not a setting --tune searches"),
        ("lr=", "give one or more different values"),
        ("lr=log(0,1e-2)", "log(low,high) needs a numeric setting and 0 < low < high"),
        ("lr=log(1e-4,1e-2)", "add --trials N"),
    ],
)
def test_a_malformed_tune_is_one_paragraph(spec, said, tmp_path, capsys):
    assert main(["run", "--data", str(tmp_path), "--out", str(tmp_path / "out"), "--tune", spec]) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 1 and said in " ".join(err.split()) and "Traceback" not in err
    assert not (tmp_path / "out").exists()
