"""Trainings in worker processes (--jobs 2, joblib/loky) and on a Dask cluster (a LocalCluster on
127.0.0.1 with 2 workers) give the results of one job in this process, on the real chest X-rays."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from benchmark import runner
from benchmark.cli import main
from benchmark.data.images import Images
from benchmark.progress import Progress
from benchmark.training.execution import auto_jobs
from tests.conftest import link_kaggle_subset

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

# --archs lists the cheaper first: with --jobs 2 pyramid_down's folds (8× the FLOPs) are given out first
ARGS = ["--archs", "baseline,pyramid_down", "--folds", "2", "--epochs", "2", "--image-size", "32", "--deterministic"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return link_kaggle_subset(tmp_path_factory.mktemp("data"), {"NORMAL": 15, "PNEUMONIA": 15}, wrapper=False)


def test_a_worker_process_trains_with_its_share_of_the_cores():
    """A loky worker is a fresh process: its task's set-up caps TensorFlow's thread pools at the worker's share
    (the cores divided among the jobs) before the runtime starts, not after, when TensorFlow ignores it."""
    pytest.importorskip("tensorflow")
    code = (
        "from benchmark.training.execution import Setup, prepare\n"
        "prepare(Setup(threads=1))\n"
        "from tensorflow.config import threading\n"
        "print(threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads())"
    )
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.split() == ["1", "1"]


def run(data, base, *extra) -> dict:
    out = base / "out"
    argv = ["run", "--data", str(data), "--out", str(out), "--cache-dir", str(base.parent / "cache"), "-q"]
    assert main([*argv, *ARGS, *extra]) == 0
    return json.loads((out / "results.json").read_text())


def fold_metrics(results: dict) -> dict:
    return {e["name"]: e["metrics"] for e in results["architectures"]}


@pytest.fixture(scope="module")
def one_job(data, tmp_path_factory):
    base, made = tmp_path_factory.mktemp("one"), []
    with pytest.MonkeyPatch.context() as patch:  # the run's Progress, kept
        patch.setattr(runner, "Progress", lambda *a, **k: made.append(Progress(*a, **k)) or made[-1])
        results = run(data, base)  # --jobs auto, the default: one job for 30 images
    assert json.loads((base / "out" / "config.json").read_text())["settings"]["jobs"] == 1
    return results, made[0]


def test_the_eta_knows_each_architectures_forward_flops_before_it_trains(one_job):
    costs = one_job[1].costs
    assert set(costs) == {"baseline", "pyramid_down"} and costs["pyramid_down"] > 5 * costs["baseline"]


def test_jobs_auto_is_one_on_a_gpu_or_for_few_images_else_what_the_cores_and_memory_allow(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    free = {"SC_AVPHYS_PAGES": 10 * 2**30 // 4096, "SC_PAGE_SIZE": 4096}  # 10 GiB: three 3-GiB trainings
    monkeypatch.setattr(os, "sysconf", lambda name: free[name])
    assert auto_jobs(gpus=0, n_images=5216, n_tasks=40) == 3
    assert auto_jobs(gpus=0, n_images=5216, n_tasks=2) == 2
    assert auto_jobs(gpus=1, n_images=5216, n_tasks=40) == 1
    assert auto_jobs(gpus=0, n_images=999, n_tasks=40) == 1
    free["SC_AVPHYS_PAGES"] = 2**30 // 4096  # 1 GiB: one
    assert auto_jobs(gpus=0, n_images=5216, n_tasks=40) == 1


def test_images_travel_to_workers_as_their_cache_path(tmp_path):
    np.save(tmp_path / "cache.npy", np.zeros((500, 64, 64, 1), np.uint8))
    images = Images(np.load(tmp_path / "cache.npy", mmap_mode="r"), np.zeros(500, int), tuple(map(str, range(500))))
    sent = pickle.dumps(images)
    assert len(sent) < 20_000 < images.pixels.nbytes  # the path, not 2 MB of pixels
    received = pickle.loads(sent)
    assert str(received.pixels.filename) == str(images.pixels.filename) and received.paths == images.paths


def test_two_worker_processes_give_the_results_of_one_job_costliest_first(data, tmp_path, one_job, monkeypatch):
    given = []
    execute = runner.execute
    monkeypatch.setattr(runner, "execute", lambda tasks, *a, **k: given.extend(tasks) or execute(tasks, *a, **k))
    two_jobs = run(data, tmp_path, "--jobs", "2")
    assert fold_metrics(two_jobs) == fold_metrics(one_job[0])
    order = [(t.arch, t.fold) for t in given]
    assert order == [("pyramid_down", 0), ("pyramid_down", 1), ("baseline", 0), ("baseline", 1)]
    out = tmp_path / "out"
    for arch in ("baseline", "pyramid_down"):
        for i in range(2):  # the driver wrote every fold's files, models included
            assert {p.name for p in (out / arch / f"fold-{i}").iterdir()} >= {"metrics.json", "model.keras"}


def test_a_dask_cluster_gives_the_results_of_one_job(data, tmp_path, one_job):
    distributed = pytest.importorskip("distributed")  # the [dask] extra; installed by the [test] extra
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        on_dask = run(data, tmp_path, "--backend", "dask", "--scheduler", cluster.scheduler_address)
    assert fold_metrics(on_dask) == fold_metrics(one_job[0])
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["settings"]["backend"] == "dask"
