"""Trainings in worker processes (--jobs 2, joblib/loky) and on a Dask cluster (a LocalCluster on
127.0.0.1 with 2 workers) give the results of one job in this process, on the real chest X-rays."""

import json
import pickle

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.data.images import Images
from tests.conftest import link_kaggle_subset

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

ARGS = ["--archs", "baseline", "--folds", "3", "--epochs", "2", "--image-size", "32", "--deterministic"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return link_kaggle_subset(tmp_path_factory.mktemp("data"), {"NORMAL": 15, "PNEUMONIA": 15}, wrapper=False)


def run(data, base, *extra) -> dict:
    out = base / "out"
    argv = ["run", "--data", str(data), "--out", str(out), "--cache-dir", str(base.parent / "cache"), "-q"]
    assert main([*argv, *ARGS, *extra]) == 0
    return json.loads((out / "results.json").read_text())


def fold_metrics(results: dict) -> dict:
    return {e["name"]: e["metrics"] for e in results["architectures"]}


@pytest.fixture(scope="module")
def one_job(data, tmp_path_factory):
    return run(data, tmp_path_factory.mktemp("one"))


def test_images_travel_to_workers_as_their_cache_path(tmp_path):
    np.save(tmp_path / "cache.npy", np.zeros((500, 64, 64, 1), np.uint8))
    images = Images(np.load(tmp_path / "cache.npy", mmap_mode="r"), np.zeros(500, int), tuple(map(str, range(500))))
    sent = pickle.dumps(images)
    assert len(sent) < 20_000 < images.pixels.nbytes  # the path, not 2 MB of pixels
    received = pickle.loads(sent)
    assert str(received.pixels.filename) == str(images.pixels.filename) and received.paths == images.paths


def test_two_worker_processes_give_the_results_of_one_job(data, tmp_path, one_job):
    two_jobs = run(data, tmp_path, "--jobs", "2")
    assert fold_metrics(two_jobs) == fold_metrics(one_job)
    out = tmp_path / "out"
    for i in range(3):  # the driver wrote every fold's files, models included
        assert {p.name for p in (out / "baseline" / f"fold-{i}").iterdir()} >= {"metrics.json", "model.keras"}


def test_a_dask_cluster_gives_the_results_of_one_job(data, tmp_path, one_job):
    distributed = pytest.importorskip("distributed")  # the [dask] extra; installed by the [test] extra
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        on_dask = run(data, tmp_path, "--backend", "dask", "--scheduler", cluster.scheduler_address)
    assert fold_metrics(on_dask) == fold_metrics(one_job)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["settings"]["backend"] == "dask"
