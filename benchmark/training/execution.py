"""Training: where the (architecture, fold) trainings run: here, in worker processes, or on a Dask cluster.

A :class:`FoldTask` carries everything one training needs (the architecture's name,
the fold's indices, the seed and the settings); :func:`run_fold` trains and scores
it and returns a :class:`FoldOutput` — the fold's record, history, out-of-fold
predictions and the saved model as bytes, or the error that stopped it. Workers
never write into the run folder: the driver does, the same way whichever executor
ran the task. The decoded images travel as the path of their memory-mapped cache
(see :class:`benchmark.data.images.Images`), so workers read them from a shared path.

Executors (``--jobs``, ``--backend``):

- ``local``, 1 job: one after another in this process, with live epoch progress;
- ``local``, N jobs: N joblib (loky) worker processes, the CPU threads split among them
  and, with several GPUs, task *i* on GPU *i mod n*; the costliest architectures' tasks first, so
  the run does not end on one long training with the other workers idle;
- ``local``, ``auto`` (the default): :func:`auto_jobs`;
- ``dask``: joblib's Dask backend on the cluster at ``--scheduler``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import pandas as pd

import architectures
from benchmark.data.images import Images
from benchmark.data.splits import Fold
from benchmark.store.runfolder import predictions_table
from benchmark.training import ExecutionSettings, TrainSettings, backend
from benchmark.training import fit as training
from benchmark.training.fit import ArchitectureError


@dataclass(frozen=True)
class Setup:
    """The backend set-up of the process (or thread) that runs a task."""

    mixed_precision: bool = False
    deterministic: bool = False
    strategy: str = "none"
    threads: int | None = None  # CPU threads for one training (None: all)
    gpu: int | None = None  # this task's GPU on a several-GPU machine (None: the default)
    compile_cache: str | None = None  # JAX's compilation cache folder


@dataclass(frozen=True)
class FoldTask:
    arch: str
    fold: int  # -1: not a fold, a refit on every training image (benchmark refit)
    split: Fold  # a trial's has no score part: only the fold's chosen model predicts it
    seed: int
    settings: TrainSettings  # a trial's: with its values of --tune
    save_model: bool = True
    arch_modules: tuple[str, ...] = ()  # files a worker process must load to know the architecture
    setup: Setup = Setup()
    raise_errors: bool = False  # --raise: a failure propagates with its traceback instead of being recorded
    trial: int | None = None  # --tune: which of the fold's trials (None: the fold itself)


@dataclass
class FoldOutput:
    task: FoldTask
    record: dict | None = None  # metrics.json
    history: dict | None = None
    predictions: pd.DataFrame | None = None  # the score fold: path, label, probability
    model: bytes | None = None  # model.keras
    error: str | None = None  # the failure on one line
    traceback: str | None = None  # and in full
    log: tuple[str, ...] = ()  # what happened on the way (an out-of-memory retry)


def prepare(setup: Setup) -> None:
    """Every task starts from a clean Keras state, whichever process or thread runs it and whatever ran there
    before: the same task then gives the same numbers here, in loky workers and on Dask (whose worker threads
    would otherwise each keep their own Keras state)."""
    keras.backend.clear_session()
    # Before the backend's set-up, which starts TensorFlow's runtime and with it fixes its thread pools: a
    # worker capped after it ran two compute threads on each of two cores (issue 26).
    backend.limit_threads(setup.threads)
    backend.setup(setup.mixed_precision, setup.deterministic, setup.strategy, setup.compile_cache)


def run_fold(task: FoldTask, images: Images, report: Callable | None = None, scope=None) -> FoldOutput:
    """Train and score one (architecture, fold); an out-of-memory error is retried once with half the batch.

    Any other failure of the architecture is returned as ``FoldOutput.error``; only
    KeyboardInterrupt and errors of this machine's own files propagate.
    """
    prepare(task.setup)
    architectures.load_files(task.arch_modules)
    folder = Path(tempfile.mkdtemp(prefix="benchmark-fold-"))
    model_path = folder / "model.keras" if task.save_model else None
    log: list[str] = []
    try:
        started = time.perf_counter()
        try:
            result, settings = _train(task, images, model_path, report, scope, log)
        except Exception as err:  # the architecture's failure, not the run's
            if task.raise_errors:
                raise
            return FoldOutput(task, error=failure_reason(err), traceback=traceback.format_exc(), log=tuple(log))
        record = _record(task, result, settings, time.perf_counter() - started)
        score = task.split.score
        predictions = predictions_table([images.paths[j] for j in score], images.labels[score], result.probabilities)
        model = model_path.read_bytes() if model_path else None
        return FoldOutput(task, record, result.history, predictions, model, log=tuple(log))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def failure_reason(err: Exception) -> str:
    """A failed fold's reason on one line: the error's own words, without Keras's colour codes and its
    dump of the arguments received.

    >>> failure_reason(ValueError("Exception encountered when calling X.call().\\n\\n\\x1b[1mToo small.\\x1b[0m\\n\\n"
    ...                           "Arguments received by X.call():\\n  • args=()"))
    'ValueError: Exception encountered when calling X.call(). Too small.'
    """
    text = str(err) if isinstance(err, ArchitectureError) else f"{type(err).__name__}: {err}"
    text = re.sub(r"\x1b\[[0-9;]*m", "", text).split("Arguments received by")[0]
    return " ".join(text.split())


def _train(task: FoldTask, images: Images, model_path, report, scope, log: list[str]):
    """(result, settings it trained with): a second attempt at half the batch after an out-of-memory error."""
    build, settings = architectures.get(task.arch).build, task.settings
    for attempt in (1, 2):
        try:
            with backend.gpu_scope(task.setup.gpu):
                result = training.train_fold(
                    build, images, task.split, settings, task.seed, model_path, report, scope, name=task.arch
                )
            return result, settings
        except Exception as err:
            if attempt == 2 or not backend.is_out_of_memory(err) or settings.batch_size < 2:
                raise
            smaller = replace(settings, batch_size=settings.batch_size // 2)
            log.append(
                f"{task.arch} {f'fold {task.fold + 1}' if task.fold >= 0 else 'refit'}: out of memory at batch size "
                f"{settings.batch_size}; "
                f"retrying once with {smaller.batch_size}"
            )
            keras.backend.clear_session()  # free what the failed attempt held
            settings = smaller


def _record(task: FoldTask, result, settings: TrainSettings, seconds: float) -> dict:
    """The fold's ``metrics.json``, but for its scores, which evaluation adds (:func:`benchmark.runner.scored`)."""
    return {
        "arch": task.arch,
        "fold": task.fold,
        "class_weight": {str(k): v for k, v in result.class_weight.items()},
        "initial_bias": result.initial_bias,
        "epochs": len(result.history["loss"]),
        "fit_seconds": result.fit_seconds,
        "predict_seconds": result.predict_seconds,
        "epoch_seconds": result.epoch_seconds,
        "phases": result.phases,  # epochs per phase: train, or warmup then finetune
        "input_seconds": result.input_seconds,
        "jit_compile": result.jit_compile,
        "task_seconds": seconds,
        "params": result.params,
        "seed": task.seed,
        "batch_size": settings.batch_size,
        "n_fit": len(task.split.train),
        "n_val": len(task.split.val),
        "n_score": len(task.split.score),
    }


def execute(
    tasks: list[FoldTask],
    images: Images,
    jobs: int = 1,
    backend: str = "local",
    scheduler: str | None = None,
    skip: Callable[[FoldTask], bool] = lambda task: False,
    report: Callable[[FoldTask], Callable | None] = lambda task: None,
    scope=None,
) -> Iterator[FoldOutput]:
    """Run ``tasks`` and yield each output as it finishes.

    In this process (one local job), ``skip`` is asked before each task starts (an
    architecture that failed stops there) and ``report(task)`` gives its per-epoch
    callback; worker processes receive every task at once.
    """
    if backend == "local" and jobs == 1:
        for task in tasks:
            if not skip(task):
                yield run_fold(task, images, report(task), scope)
        return
    from joblib import Parallel, delayed, parallel_config

    if backend == "dask":
        from distributed import Client

        client = Client(scheduler)
        try:
            with parallel_config(backend="dask"):
                yield from Parallel(n_jobs=-1, return_as="generator_unordered")(
                    delayed(run_fold)(task, images) for task in tasks
                )
        finally:
            client.close()
        return
    threads = tasks[0].setup.threads if tasks else None  # the same for every local worker
    with parallel_config(backend="loky", inner_max_num_threads=threads):
        yield from Parallel(n_jobs=jobs, return_as="generator_unordered")(
            delayed(run_fold)(task, images) for task in tasks
        )


AUTO_MIN_IMAGES = 1000  # below, a worker's start-up (the backend's import, about 10 s) outweighs a second core
WORKER_BYTES = 3 * 2**30  # one training's memory: the main job's peak RSS at 56 px was 2.4 GiB (issue 26)


def auto_jobs(gpus: int, n_images: int, n_tasks: int) -> int:
    """``--jobs auto``: on the CPU, with 1,000 training images or more, as many trainings at once as there
    are cores for this process and memory available for (3 GiB each), at most one per task; else 1. On the
    main job (56 px, 2 cores, issue 26 at 62867f1) one training at a time kept 1.35 cores busy, two 1.76."""
    if gpus or n_images < AUTO_MIN_IMAGES:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    memory = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return max(1, min(cores, n_tasks, memory // WORKER_BYTES))


def setups(execution: ExecutionSettings, gpus: int, compile_cache: str | None = None) -> list[Setup]:
    """The :class:`Setup` of task *i* is ``setups(...)[i % len]``.

    >>> setups(ExecutionSettings(jobs=2), gpus=0)[0].threads == max(1, (os.cpu_count() or 1) // 2)
    True
    >>> setups(ExecutionSettings(jobs=2, deterministic=True), gpus=0)[0].threads is None
    True
    >>> [s.gpu for s in setups(ExecutionSettings(jobs=4), gpus=2)]
    [0, 1]
    """
    e = execution
    common = {"mixed_precision": e.mixed_precision, "deterministic": e.deterministic, "compile_cache": compile_cache}
    if e.backend == "local" and e.jobs == 1:
        return [Setup(**common, strategy=e.strategy)]  # this process: all its threads and GPUs
    if e.backend == "dask":
        return [Setup(**common)]  # the cluster's workers size themselves
    if gpus > 1:
        return [Setup(**common, gpu=g) for g in range(gpus)]
    if e.deterministic:  # TensorFlow's sums follow its thread count: each worker keeps one job's, the same numbers
        return [Setup(**common)]
    return [Setup(**common, threads=max(1, (os.cpu_count() or 1) // e.jobs))]
