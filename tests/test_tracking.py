"""TensorBoard event files and MLflow runs of a small real-data run, read back and checked against the
run folder (every number MLflow holds is the run folder's); MLflow against a real `mlflow server`
(SQLite) started here on 127.0.0.1, and its default local store; a resumed run logs nothing twice; an
unreachable server stops the run before training; a server killed mid-run stops it in seconds with one
paragraph (or, with --track-optional, only the tracking), and the resumed run catches MLflow up."""

import copy
import glob
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import benchmark
from benchmark.cli import main
from benchmark.config import RunConfig
from benchmark.data.images import decode
from benchmark.store.results import parse
from benchmark.store.runfolder import RunFolder
from benchmark.tracking.mlflow_tracking import MLflow
from tests.conftest import link_kaggle_subset

pytestmark = [pytest.mark.slow, pytest.mark.realdata]
mlflow = pytest.importorskip("mlflow")  # the [mlflow] extra; installed by the [test] extra

SMALL = ["--archs", "baseline,pyramid_up", "--folds", "2", "--epochs", "2", "--image-size", "32"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(base, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """`mlflow server` with a SQLite backend in ``base`` on 127.0.0.1, in a process group of its own
    (its workers are stopped with it); (process, uri) once it accepts connections."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{base / 'mlflow.db'}", "--default-artifact-root", str(base / "artifacts"),
           "--workers", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.5)
    stop_server(proc, signal.SIGKILL)
    pytest.fail("mlflow server did not start")


def stop_server(proc: subprocess.Popen, how: int = signal.SIGTERM) -> None:
    os.killpg(proc.pid, how)  # the group this module started
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` with a SQLite backend on 127.0.0.1, for this module."""
    proc, uri = start_server(tmp_path_factory.mktemp("mlflow"))
    yield uri
    stop_server(proc)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return link_kaggle_subset(tmp_path_factory.mktemp("data"), {"NORMAL": 12, "PNEUMONIA": 12}, test_per_class=4)


@pytest.fixture(scope="module")
def tracked(data, server, tmp_path_factory):
    base = tmp_path_factory.mktemp("tracked")
    argv = ["run", "--data", str(data), "--out", str(base / "out"), "--cache-dir", str(base / "cache"), *SMALL,
            "--tensorboard", "--track", "mlflow", "--tracking-uri", server, "--experiment", "chest-xray",
            "-q"]  # fmt: skip
    assert main(argv) == 0
    return {
        "out": base / "out",
        "argv": argv,
        "client": mlflow.tracking.MlflowClient(tracking_uri=server),
        "data": data,
    }


def events(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the TensorBoard event files in ``folder``: tag → [(step, value)]."""
    import tensorflow as tf

    found = {}
    for path in sorted(glob.glob(str(folder / "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    found.setdefault(value.tag, []).append((event.step, value.simple_value))
                else:
                    found.setdefault(value.tag, []).append((event.step, value.metadata.plugin_data.plugin_name))
    return found


def test_tensorboard_holds_every_folds_curves_and_each_architectures_hparams(tracked):
    out = tracked["out"]
    results = json.loads((out / "results.json").read_text())
    for arch in ("baseline", "pyramid_up"):
        for i in range(2):
            scalars = events(
                out / "tensorboard" / arch / f"fold-{i + 1}"
            )  # numbered from 1, as everywhere a user reads
            history = pd.read_csv(out / arch / f"fold-{i}" / "history.csv")
            assert [s for s, _ in scalars["epoch/val_loss"]] == list(history.epoch)
            assert [v for _, v in scalars["epoch/val_loss"]] == pytest.approx(list(history.val_loss), rel=1e-6)
            record = json.loads((out / arch / f"fold-{i}" / "metrics.json").read_text())
            assert scalars["fold/f1"][0][1] == pytest.approx(record["metrics"]["f1"], rel=1e-6)
        session = events(out / "tensorboard" / arch / "hparams")
        assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(session)
        entry = next(e for e in results["architectures"] if e["name"] == arch)
        assert session["cv/f1"][0][1] == pytest.approx(entry["metrics"]["f1"]["mean"], rel=1e-6)


def test_mlflow_has_a_parent_a_child_per_architecture_and_a_grandchild_per_fold(tracked, tmp_path):
    client, out = tracked["client"], tracked["out"]
    ids = json.loads((out / "tracking.json").read_text())
    experiment = client.get_experiment_by_name("chest-xray")  # --experiment
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    by_id = {r.info.run_id: r for r in runs}
    parent = by_id[ids["parent"]]
    assert parent.data.params["folds"] == "2" and parent.data.params["image_size"] == "32"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == ids["parent"]]
    assert sorted(r.data.tags["architecture"] for r in children) == ["baseline", "pyramid_up"]
    results = json.loads((out / "results.json").read_text())
    for child in children:
        arch = child.data.tags["architecture"]
        entry = next(e for e in results["architectures"] if e["name"] == arch)
        assert child.data.metrics["f1_mean"] == pytest.approx(entry["metrics"]["f1"]["mean"])
        assert child.data.metrics["roc_auc_std"] == pytest.approx(entry["metrics"]["roc_auc"]["std"])
        f1 = entry["metrics"]["f1"]["folds"]
        best = f1.index(max(f1))
        assert [a.path for a in client.list_artifacts(child.info.run_id)] == [f"fold-{best + 1}"]  # the best
        # an MLflow Model with its signature: MLflow's pyfunc loads it and gives the run's own test predictions
        model = client.download_artifacts(child.info.run_id, f"fold-{best + 1}/model", str(tmp_path))
        served = mlflow.pyfunc.load_model(model)
        assert served.metadata.signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 32, 32, 1)
        saved = pd.read_csv(out / arch / f"fold-{best}" / "test_predictions.csv")
        pixels = np.stack([decode(tracked["data"] / p, 32) for p in saved.path]).astype(np.float32)  # 0–255
        assert served.predict(pixels).ravel() == pytest.approx(saved.probability.to_numpy(), abs=1e-5)
        folds = sorted((r for r in runs if r.data.tags.get("mlflow.parentRunId") == child.info.run_id),
                       key=lambda r: r.data.tags["fold"])  # fmt: skip
        assert [(r.data.tags["fold"], r.info.run_name) for r in folds] == [
            ("1", f"{arch} fold 1"),
            ("2", f"{arch} fold 2"),
        ]
        for i, run in enumerate(folds):
            record = json.loads((out / arch / f"fold-{i}" / "metrics.json").read_text())
            assert (run.info.end_time - run.info.start_time) / 1000 >= record["fit_seconds"]  # open while it trained
            assert run.data.metrics["fold/f1"] == pytest.approx(record["metrics"]["f1"])
            assert run.data.params["n_fit"] == str(record["n_fit"]) and run.data.params["seed"] == str(record["seed"])
            history = client.get_metric_history(run.info.run_id, "epoch/val_loss")
            assert [m.step for m in history] == list(range(1, record["epochs"] + 1))
    assert {a.path for a in client.list_artifacts(ids["parent"])} == {"report.html", "leaderboard.md", "results.json"}


def flat_scores(metrics: dict) -> dict[str, float]:
    """A metrics.json's single numbers, per-class ones as class_<c>/<metric> (the decision threshold is a setting)."""
    out = {k: v for k, v in metrics.items() if isinstance(v, int | float) and k != "threshold"}
    return out | {f"class_{c}/{k}": v for c, values in metrics.get("per_class", {}).items() for k, v in values.items()}


def test_every_number_mlflow_shows_is_the_run_folders(tracked):
    """A fold's scores are its metrics.json (not the last epoch's training value of the same name), its curves
    are history.csv epoch by epoch, an architecture's mean ± std are results.json's, its rank the leaderboard's."""
    client, out = tracked["client"], tracked["out"]
    ids = json.loads((out / "tracking.json").read_text())
    results = json.loads((out / "results.json").read_text())
    for key, run_id in ids["folds"].items():
        arch, fold = key.rsplit("/", 1)
        record = json.loads((out / arch / f"fold-{fold}" / "metrics.json").read_text())
        history = pd.read_csv(out / arch / f"fold-{fold}" / "history.csv")
        logged = client.get_run(run_id).data.metrics
        scores = {f"fold/{k}": v for k, v in flat_scores(record["metrics"]).items()}
        curves = [f"epoch/{c}" for c in history.columns if c != "epoch"]
        assert set(logged) == set(scores) | set(curves) | {"fit_seconds"}
        assert logged["fit_seconds"] == pytest.approx(record["fit_seconds"], rel=1e-6)
        assert {k: logged[k] for k in scores} == pytest.approx(scores, rel=1e-6)
        assert "accuracy" in history.columns and logged["fold/accuracy"] == pytest.approx(record["metrics"]["accuracy"])
        for name in curves:
            steps = [(m.step, m.value) for m in client.get_metric_history(run_id, name)]
            epochs = zip(history.epoch, history[name.removeprefix("epoch/")], strict=True)
            assert steps == [(e, pytest.approx(v, rel=1e-6)) for e, v in epochs]
    for entry in results["architectures"]:
        run = client.get_run(ids["archs"][entry["name"]]["id"])
        expected = {f"{m}_{s}": v[s] for m, v in entry["metrics"].items() for s in ("mean", "std") if v[s] == v[s]}
        assert run.data.metrics == pytest.approx(expected, rel=1e-6)
        assert run.data.tags["rank"] == str(entry["rank"]) and "rank" not in run.data.params
        assert run.data.params["params"] == str(entry["params"])


def test_an_architectures_rank_is_updated_as_the_others_finish(tracked, server, tmp_path):
    """The rank an architecture had when it finished first is replaced by its final one (MLflow params are
    written once, so the rank is a tag)."""
    results = json.loads((tracked["out"] / "results.json").read_text())
    last = results["architectures"][-1]  # rank 2 in the end
    alone = copy.deepcopy(results)  # as published when only `last` had finished
    for entry in alone["architectures"]:
        finished = entry["name"] == last["name"]
        entry.update(rank=1 if finished else None, status="ok" if finished else "failed")
    config = RunConfig.from_flat(data=tmp_path, out=tmp_path / "out", rank_by="f1", track="mlflow", tracking_uri=server)
    folder = RunFolder(tmp_path / "out")
    folder.path.mkdir()
    tracker = MLflow.start(folder, config)
    tracker.published(parse(alone, folder))
    run_id = json.loads(folder.tracking.read_text())["archs"][last["name"]]["id"]
    assert tracked["client"].get_run(run_id).data.tags["rank"] == "1"
    tracker.published(parse(results, folder))
    assert last["rank"] == 2 and tracked["client"].get_run(run_id).data.tags["rank"] == "2"


def test_a_resumed_run_continues_the_same_mlflow_runs_and_logs_nothing_twice(tracked):
    client = tracked["client"]
    experiment = client.get_experiment_by_name("chest-xray")
    before = {r.info.run_id: dict(r.data.metrics) for r in client.search_runs([experiment.experiment_id])}
    files = sorted(glob.glob(str(tracked["out"] / "tensorboard" / "*" / "fold-*" / "*")))
    assert main(tracked["argv"]) == 0
    after = {r.info.run_id: dict(r.data.metrics) for r in client.search_runs([experiment.experiment_id])}
    assert after.keys() == before.keys()  # no new run
    assert sorted(glob.glob(str(tracked["out"] / "tensorboard" / "*" / "fold-*" / "*"))) == files
    parent = json.loads((tracked["out"] / "tracking.json").read_text())["parent"]
    fold_run = next(iter(json.loads((tracked["out"] / "tracking.json").read_text())["folds"].values()))
    assert fold_run != parent and len(client.get_metric_history(fold_run, "epoch/val_loss")) == 2  # two epochs


def test_mlflows_default_local_store_the_experiment_from_the_environment_and_fold_runs_open_while_they_train(
    data, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    client = mlflow.tracking.MlflowClient()  # the same default, from the same folder
    running = []

    def at_each_epoch(event):  # while a fold trains, its MLflow run is there, running
        if event["event"] == "epoch":
            experiment = client.get_experiment_by_name("from-env")
            runs = client.search_runs(
                [experiment.experiment_id], f"attributes.run_name = 'baseline fold {event['fold'] + 1}'"
            )
            running.append([r.info.status for r in runs])

    benchmark.run(data, tmp_path / "out", cache_dir=tmp_path / "cache", archs="baseline", folds=2, epochs=1,
                  image_size=32, save_models="none", track="mlflow", progress=at_each_epoch)  # fmt: skip
    assert running == [["RUNNING"], ["RUNNING"]]
    runs = client.search_runs([client.get_experiment_by_name("from-env").experiment_id])
    assert len(runs) == 1 + 1 + 2 and {r.info.status for r in runs} == {"FINISHED"}  # benchmark, architecture, folds
    assert any(p.name.startswith("mlflow") or p.name == "mlruns" for p in tmp_path.iterdir())
    assert "MLflow: experiment 'from-env', run 'out'" in capsys.readouterr().err


def test_an_unreachable_server_stops_before_training_unless_optional(data, tmp_path, capsys):
    args = ["run", "--data", str(data), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
            "--archs", "baseline", "--folds", "2", "--epochs", "1", "--image-size", "32", "--no-save-models",
            "--track", "mlflow", "--tracking-uri", f"http://127.0.0.1:{free_port()}", "-q"]  # fmt: skip
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--track mlflow: the tracking server at http://127.0.0.1:" in err and "--track-optional" in err
    assert not (tmp_path / "out" / "baseline").exists()  # nothing trained, the run folder kept
    assert main([*args, "--track-optional"]) == 0
    assert "cannot be reached" in capsys.readouterr().err  # a warning, on standard error
    assert (tmp_path / "out" / "results.json").exists()


@pytest.fixture
def killed_after_the_first_fold(monkeypatch):
    """Kill ``server["proc"]`` (SIGKILL, its whole process group) once MLflow has logged a fold; the time
    of the kill is put in ``server["killed"]``."""
    server = {}
    log_fold = MLflow.fold

    def fold_then_kill(self, *args):
        log_fold(self, *args)
        if "killed" not in server:
            stop_server(server["proc"], signal.SIGKILL)
            server["killed"] = time.time()

    monkeypatch.setattr(MLflow, "fold", fold_then_kill)
    return server


def lost_run_args(data, tmp_path, uri: str) -> list[str]:
    return ["run", "--data", str(data), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
            "--archs", "baseline", "--folds", "3", "--epochs", "1", "--image-size", "32", "--no-save-models",
            "--track", "mlflow", "--tracking-uri", uri, "-q"]  # fmt: skip


def test_a_server_lost_mid_run_stops_it_in_seconds_with_one_paragraph_and_the_resume_catches_up(
    data, tmp_path, capsys, killed_after_the_first_fold
):
    base = tmp_path / "mlflow"
    proc, uri = start_server(base)
    killed_after_the_first_fold["proc"] = proc
    args = lost_run_args(data, tmp_path, uri)
    assert main(args) == 2
    assert time.time() - killed_after_the_first_fold["killed"] < 60  # not MLflow's 4 minutes of retries
    captured = capsys.readouterr()
    err = captured.err
    assert "View run" not in captured.out  # MLflow's own lines (one per finished run) are not printed
    paragraph = " ".join(err.split())
    assert f"error: --track mlflow: the tracking server at {uri} failed while logging baseline fold 2" in paragraph
    out = tmp_path / "out"
    assert f"The finished folds are saved in {out}." in paragraph and "Traceback" not in err
    assert err.splitlines()[-1] == f"  {shlex.join(['benchmark', *args])}"  # the resume command
    lines = err.splitlines()  # one paragraph (its lines indented under "error: "), then the command
    assert lines[0].startswith("error: ") and all(line.startswith(" " * 7) for line in lines[1:-1])
    # stopped as the second fold started (its MLflow run is opened then): no training is lost to the tracking
    assert [p.parent.name for p in sorted(out.glob("baseline/fold-*/metrics.json"))] == ["fold-0"]
    assert not list(out.glob(".lock*"))
    # The server back (same store, same address): the resume logs the saved fold MLflow missed, then the rest.
    proc, _ = start_server(base, port=int(uri.rsplit(":", 1)[1]))
    try:
        assert main(args) == 0
        client = mlflow.tracking.MlflowClient(tracking_uri=uri)
        ids = json.loads((out / "tracking.json").read_text())
        assert sorted(ids["folds"]) == ["baseline/0", "baseline/1", "baseline/2"]
        for key, run_id in ids["folds"].items():
            record = json.loads((out / "baseline" / f"fold-{key[-1]}" / "metrics.json").read_text())
            assert client.get_run(run_id).data.metrics["fold/f1"] == pytest.approx(record["metrics"]["f1"])
    finally:
        stop_server(proc)


def test_with_track_optional_a_server_lost_mid_run_is_a_warning_and_the_run_goes_on(
    data, tmp_path, capsys, killed_after_the_first_fold
):
    proc, uri = start_server(tmp_path / "mlflow")
    killed_after_the_first_fold["proc"] = proc
    assert main([*lost_run_args(data, tmp_path, uri), "--track-optional"]) == 0
    assert time.time() - killed_after_the_first_fold["killed"] < 60
    captured = capsys.readouterr()
    warning = " ".join(captured.err.split())
    assert f"warning: MLflow at {uri} failed while logging baseline fold 2" in warning
    assert captured.out == "" or "warning" not in captured.out and "View run" not in captured.out  # on stderr only
    assert "the run goes on without tracking" in warning and "Traceback" not in captured.err
    assert warning.count("warning: MLflow") == 1  # said once, not at every fold
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["architectures"][0]["folds_done"] == 3
