"""TensorBoard event files and MLflow runs of a small real-data run, read back and checked against the
run folder; MLflow against a real `mlflow server` (SQLite) started here on 127.0.0.1, and its default
local store; a resumed run logs nothing twice; an unreachable server stops the run before training."""

import glob
import json
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

from benchmark.cli import main
from tests.conftest import link_kaggle_subset

pytestmark = [pytest.mark.slow, pytest.mark.realdata]
mlflow = pytest.importorskip("mlflow")  # the [mlflow] extra; installed by the [test] extra

SMALL = ["--archs", "baseline,pyramid_up", "--folds", "2", "--epochs", "2", "--image-size", "32"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` with a SQLite backend on 127.0.0.1, for this module."""
    base = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{base / 'mlflow.db'}", "--default-artifact-root", str(base / "artifacts"),
           "--workers", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("mlflow server did not start")
    yield uri
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return link_kaggle_subset(tmp_path_factory.mktemp("data"), {"NORMAL": 12, "PNEUMONIA": 12}, test_per_class=4)


@pytest.fixture(scope="module")
def tracked(data, server, tmp_path_factory):
    base = tmp_path_factory.mktemp("tracked")
    argv = ["run", "--data", str(data), "--out", str(base / "out"), "--cache-dir", str(base / "cache"), *SMALL,
            "--tensorboard", "--track", "mlflow", "--tracking-uri", server, "-q"]  # fmt: skip
    assert main(argv) == 0
    return {"out": base / "out", "argv": argv, "client": mlflow.tracking.MlflowClient(tracking_uri=server)}


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
            scalars = events(out / "tensorboard" / arch / f"fold-{i}")
            history = pd.read_csv(out / arch / f"fold-{i}" / "history.csv")
            assert [s for s, _ in scalars["epoch/val_loss"]] == list(history.epoch)
            assert [v for _, v in scalars["epoch/val_loss"]] == pytest.approx(list(history.val_loss), rel=1e-6)
            record = json.loads((out / arch / f"fold-{i}" / "metrics.json").read_text())
            assert scalars["fold/f1"][0][1] == pytest.approx(record["metrics"]["f1"], rel=1e-6)
        session = events(out / "tensorboard" / arch / "hparams")
        assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(session)
        entry = next(e for e in results["architectures"] if e["name"] == arch)
        assert session["cv/f1"][0][1] == pytest.approx(entry["metrics"]["f1"]["mean"], rel=1e-6)


def test_mlflow_has_a_parent_a_child_per_architecture_and_a_grandchild_per_fold(tracked):
    client, out = tracked["client"], tracked["out"]
    ids = json.loads((out / "tracking.json").read_text())
    experiment = client.get_experiment_by_name("cnn-benchmark")
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
        assert [a.path for a in client.list_artifacts(child.info.run_id)] == [f"fold-{f1.index(max(f1))}"]  # the best
        folds = sorted((r for r in runs if r.data.tags.get("mlflow.parentRunId") == child.info.run_id),
                       key=lambda r: r.data.tags["fold"])  # fmt: skip
        assert len(folds) == 2
        for i, run in enumerate(folds):
            record = json.loads((out / arch / f"fold-{i}" / "metrics.json").read_text())
            assert run.data.metrics["f1"] == pytest.approx(record["metrics"]["f1"])
            assert run.data.params["n_fit"] == str(record["n_fit"]) and run.data.params["seed"] == str(record["seed"])
            history = client.get_metric_history(run.info.run_id, "val_loss")
            assert [m.step for m in history] == list(range(1, record["epochs"] + 1))
    assert {a.path for a in client.list_artifacts(ids["parent"])} == {"report.html", "leaderboard.md", "results.json"}


def test_a_resumed_run_continues_the_same_mlflow_runs_and_logs_nothing_twice(tracked):
    client = tracked["client"]
    experiment = client.get_experiment_by_name("cnn-benchmark")
    before = {r.info.run_id: dict(r.data.metrics) for r in client.search_runs([experiment.experiment_id])}
    files = sorted(glob.glob(str(tracked["out"] / "tensorboard" / "*" / "fold-*" / "*")))
    assert main(tracked["argv"]) == 0
    after = {r.info.run_id: dict(r.data.metrics) for r in client.search_runs([experiment.experiment_id])}
    assert after.keys() == before.keys()  # no new run
    assert sorted(glob.glob(str(tracked["out"] / "tensorboard" / "*" / "fold-*" / "*"))) == files
    parent = json.loads((tracked["out"] / "tracking.json").read_text())["parent"]
    assert len(client.get_metric_history(next(iter(k for k in after if k != parent)), "val_loss")) <= 2


def test_mlflows_default_local_store(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = ["run", "--data", str(data), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
            "--archs", "baseline", "--folds", "2", "--epochs", "1", "--image-size", "32", "--no-save-models",
            "--track", "mlflow", "-q"]  # fmt: skip
    assert main(args) == 0
    client = mlflow.tracking.MlflowClient()  # the same default, from the same folder
    runs = client.search_runs([client.get_experiment_by_name("cnn-benchmark").experiment_id])
    assert len(runs) == 1 + 1 + 2  # the benchmark, its architecture, two folds
    assert any(p.name.startswith("mlflow") or p.name == "mlruns" for p in tmp_path.iterdir())


def test_an_unreachable_server_stops_before_training_unless_optional(data, tmp_path, capsys):
    args = ["run", "--data", str(data), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
            "--archs", "baseline", "--folds", "2", "--epochs", "1", "--image-size", "32", "--no-save-models",
            "--track", "mlflow", "--tracking-uri", f"http://127.0.0.1:{free_port()}", "-q"]  # fmt: skip
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--track mlflow: the tracking server at http://127.0.0.1:" in err and "--track-optional" in err
    assert not (tmp_path / "out" / "baseline").exists()  # nothing trained, the run folder kept
    assert main([*args, "--track-optional"]) == 0
    assert "cannot be reached" in capsys.readouterr().out
    assert (tmp_path / "out" / "results.json").exists()
