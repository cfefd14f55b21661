"""Tracking in MLflow (``--track mlflow``): one parent run per benchmark, a child run
per architecture, a grandchild per fold.

- parent: every setting as a parameter; at the end ``report.html``, ``leaderboard.md`` and
  ``results.json`` as artifacts;
- architecture: its description and parameter count as parameters, the mean and std of every
  metric (``f1_mean``, ``f1_std`` ...) once all its folds are done, and its ``rank`` as a tag,
  updated at every publication (a rank changes as other architectures finish); the best fold's
  model (``--track-models best``) or every fold's (``all``) as an MLflow Model with a signature
  (``fold-<n>/model``: ``mlflow models serve`` and the model registry take it);
- fold: opened when the fold starts (one training at a time; with --jobs, its start time is
  the fold's own), its sizes, seed, class weights and output bias as parameters, every epoch's
  curves as ``epoch/loss``, ``epoch/val_loss`` ... (the epoch as step), ``fit_seconds`` and the
  fold's scores as ``fold/f1``, ``fold/class_<c>/recall`` ...: the names TensorBoard shows, and
  never the same name for a training curve and a score.

Folds (and trials) are numbered from 1 in everything MLflow shows — run names, the ``fold`` tag,
artifact paths — as on the console and in the report. The run ids are kept in
``RUN/tracking.json``; a resumed run continues the same MLflow runs and logs each fold and each
architecture's summary once. The tracking server comes from ``--tracking-uri``, else
``MLFLOW_TRACKING_URI``, else MLflow's default local store; the experiment from ``--experiment``,
else ``MLFLOW_EXPERIMENT_NAME``, else ``cnn-benchmark``. MLflow's own "View run" lines are
replaced by one line naming the benchmark's run.

A server lost mid-run fails fast (a few short retries, unless ``MLFLOW_HTTP_REQUEST_*`` are set)
and stops the run with :class:`TrackingLost` (the folds finished so far are saved, and a resumed
run logs them), or, with ``--track-optional``, says so once on standard error and the run goes on
without tracking.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from contextlib import contextmanager

from benchmark import UsageError
from benchmark.evaluation.comparison import best_fold
from benchmark.store.files import read_json, write_json
from benchmark.store.results import ArchResult, RunResults
from benchmark.store.runfolder import RunFolder
from benchmark.tracking import scalars

EXPERIMENT = "cnn-benchmark"
# During the run: a lost server fails in seconds, not after MLflow's default ~4 minutes of retries.
# A variable the user has set is kept.
SHORT_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}  # fmt: skip
# MLflow prints "View run ... at: ..." on standard output at every finished run (9 for a small benchmark),
# into the progress line: the tool says where its runs are once instead.
QUIET_URLS = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
BATCH = 1000


class TrackingLost(UsageError):
    """The tracking server stopped answering during a run (the finished folds are saved)."""


class MLflow:
    def __init__(self, client, experiment_id: str, folder: RunFolder, config, state: dict, where: str):
        self.client, self.experiment_id, self.folder, self.config, self.state = (
            client, experiment_id, folder, config, state,
        )  # fmt: skip
        self.where = where  # the server, in words
        self.off = False  # set when the server is lost and --track-optional was given

    @classmethod
    def start(cls, folder: RunFolder, config) -> MLflow | None:
        """Connect, and open (or reopen, on resume) the parent run; None when the server cannot be
        reached and ``--track-optional`` was given (after a warning)."""
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise UsageError("--track mlflow needs MLflow: pip install -e '.[mlflow]', then run again.") from None
        uri = config.tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
        where = uri or "MLflow's default local store"
        name = config.tracking.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
        client = MlflowClient(tracking_uri=uri)
        try:
            with _environment(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="10"):
                experiment = client.get_experiment_by_name(name)
                experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
        except Exception as err:  # unreachable, refused, wrong scheme: MLflow raises many kinds
            if config.tracking.track_optional:
                print(f"warning: MLflow at {where} cannot be reached ({_reason(err)}); going on without tracking.",
                      file=sys.stderr)  # fmt: skip
                return None
            raise UsageError(
                f"--track mlflow: the tracking server at {where} cannot be reached ({_reason(err)}). Start it, fix "
                "--tracking-uri / MLFLOW_TRACKING_URI, or add --track-optional to run without tracking."
            ) from None
        state = read_json(folder.tracking) or {"folds": {}, "archs": {}}
        tracker = cls(client, experiment_id, folder, config, state, where)
        with tracker._calls("the benchmark's run"):
            parent = tracker._parent()
        if not config.output.quiet and not tracker.off:
            print(f"MLflow: experiment {name!r}, run {tracker.folder.path.name!r}{_url(uri, experiment_id, parent)}",
                  file=sys.stderr)  # fmt: skip
        return None if tracker.off else tracker

    @contextmanager
    def _calls(self, what: str):
        """Talk to the server with short retries; a failure stops the run, or only the tracking
        (``--track-optional``)."""
        from mlflow.exceptions import MlflowException
        from requests import RequestException

        with _environment(**{k: v for k, v in (SHORT_RETRIES | QUIET_URLS).items() if k not in os.environ}):
            try:
                yield
            except (MlflowException, RequestException, OSError) as err:  # OSError: a local store
                if isinstance(err, OSError) and str(err.filename or "").startswith(str(self.folder.path)):
                    raise  # the run folder's own tracking.json: the CLI's full-disk paragraph
                self._lost(what, err)

    def _lost(self, what: str, err: Exception) -> None:
        if self.config.tracking.track_optional:
            self.off = True
            print(f"warning: MLflow at {self.where} failed while logging {what} ({_reason(err)}); the run goes on "
                  "without tracking (a rerun with the same --out logs what is missing).", file=sys.stderr)  # fmt: skip
            return
        raise TrackingLost(
            f"--track mlflow: the tracking server at {self.where} failed while logging {what} ({_reason(err)}). "
            f"The finished folds are saved in {self.folder.path}. Start the server again and resume the run (it "
            "logs the saved folds to MLflow), or resume with --track-optional to go on without tracking."
        ) from None

    def _save(self) -> None:
        write_json(self.folder.tracking, self.state)

    def _parent(self) -> str:
        if "parent" not in self.state:
            run = self.client.create_run(self.experiment_id, run_name=self.folder.path.name)
            settings = {k: str(v) for k, v in self.config.to_dict().items() if v is not None}
            self.client.log_batch(run.info.run_id, params=_params(settings))
            self.client.set_tag(run.info.run_id, "run_folder", str(self.folder.path.resolve()))
            self.state["parent"] = run.info.run_id
            self._save()
        return self.state["parent"]

    def _arch(self, arch: str) -> str:
        if arch not in self.state["archs"]:
            run = self.client.create_run(
                self.experiment_id, run_name=arch, tags={"mlflow.parentRunId": self._parent(), "architecture": arch}
            )
            self.state["archs"][arch] = {"id": run.info.run_id, "summary": False}
            self._save()
        return self.state["archs"][arch]["id"]

    def started(self, arch: str, fold: int) -> None:
        """A fold starts training here: its run is opened now, so a long fold shows (running) in MLflow."""
        key = f"{arch}/{fold}"
        if self.off or key in self.state["folds"] or key in self.state.setdefault("open", {}):
            return
        with self._calls(f"{arch} fold {fold + 1}"):
            self.state["open"][key] = self._open_fold(arch, fold, start_time=None)
            self._save()

    def _open_fold(self, arch: str, fold: int, start_time: int | None) -> str:
        run = self.client.create_run(
            self.experiment_id,
            start_time=start_time,
            run_name=f"{arch} fold {fold + 1}",
            tags={"mlflow.parentRunId": self._arch(arch), "architecture": arch, "fold": str(fold + 1)},
        )
        return run.info.run_id

    def fold(self, arch: str, fold: int, record: dict, history: dict) -> None:
        key = f"{arch}/{fold}"
        if self.off or key in self.state["folds"]:
            return  # logged by an earlier invocation
        with self._calls(f"{arch} fold {fold + 1}"):
            self._fold(arch, fold, record, history)

    def _fold(self, arch: str, fold: int, record: dict, history: dict) -> None:
        key = f"{arch}/{fold}"
        run_id = self.state.setdefault("open", {}).pop(key, None)  # opened when the fold started here
        if run_id is None:  # trained in a worker, or by an earlier invocation: its start is its training's
            seconds = record.get("task_seconds") or 0
            run_id = self._open_fold(arch, fold, start_time=int((time.time() - seconds) * 1000))
        params = {k: record[k] for k in ("seed", "batch_size", "n_fit", "n_val", "n_score", "epochs", "best_epoch")}
        params |= {f"class_weight_{c}": w for c, w in record["class_weight"].items()}
        params["initial_bias"] = record["initial_bias"]
        scores = {f"fold/{k}": v for k, v in scalars(record["metrics"]).items()}
        self.client.log_batch(run_id, params=_params(params))
        metrics = _curves(history) + _metrics({**scores, "fit_seconds": record["fit_seconds"]})
        for start in range(0, len(metrics), BATCH):  # MLflow takes at most 1000 values per call
            self.client.log_batch(run_id, metrics=metrics[start : start + BATCH])
        for t, loss in enumerate(record.get("tuning", {}).get("inner_loss", [])):
            self._trial(arch, fold, t, loss, run_id)
        self.client.set_terminated(run_id)
        self.state["folds"][key] = run_id
        self._save()

    def _trial(self, arch: str, fold: int, trial: int, loss: float | None, parent: str) -> None:
        """One trial of a tuned fold, nested under the fold's run: its settings, curves and inner loss."""
        saved = self.folder.read_trial(arch, fold, trial)
        if saved is None:  # a failed trial
            return
        record, history = saved
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{arch} fold {fold + 1} trial {trial + 1}",
            tags={"mlflow.parentRunId": parent, "architecture": arch, "fold": str(fold + 1), "trial": str(trial + 1)},
        )
        self.client.log_batch(run.info.run_id, params=_params({**record["values"], "epochs": record["epochs"]}),
                              metrics=_curves(history) + _metrics({"inner_loss": loss}))  # fmt: skip
        self.client.set_terminated(run.info.run_id)

    def published(self, results: RunResults) -> None:
        if not self.off:
            with self._calls("the results"):
                self._published(results)

    def _published(self, results: RunResults) -> None:
        for entry in results.architectures:
            done = entry.ok and entry.folds_done == results.info.n_folds
            if done and not self.state["archs"].get(entry.name, {}).get("summary"):
                self._summary(entry)
            if self.state["archs"].get(entry.name, {}).get("summary") and entry.rank is not None:
                self.client.set_tag(self._arch(entry.name), "rank", str(entry.rank))  # a tag: it can change

    def _summary(self, entry: ArchResult) -> None:
        run_id = self._arch(entry.name)
        means = {f"{m}_mean": v.mean for m, v in entry.metrics.items()}
        stds = {f"{m}_std": v.std for m, v in entry.metrics.items()}
        facts = {"params": entry.params, "description": entry.description[:500]}
        self.client.log_batch(run_id, metrics=_metrics(means | stds), params=_params(facts))
        self._models(entry, run_id)
        self.client.set_terminated(run_id)
        self.state["archs"][entry.name]["summary"] = True
        self._save()

    def _models(self, entry: ArchResult, run_id: str) -> None:
        if self.config.tracking.track_models == "none":
            return
        chosen = range(entry.folds_done)
        if self.config.tracking.track_models == "best":
            chosen = [best_fold(entry, self.config.cv.rank_by)]
        for i in chosen:
            path = self.folder.model_path(entry.name, i)
            if path.exists():
                self._model(path, run_id, f"fold-{i + 1}/model")

    def _model(self, path, run_id: str, artifact_path: str) -> None:
        """A saved fold model as an MLflow Model (the Keras flavour, with its signature: the pixels as the run
        feeds them in, the model's probabilities out), logged to ``run_id`` under ``artifact_path``."""
        import keras
        import mlflow.keras
        import numpy as np
        from mlflow.models import ModelSignature
        from mlflow.types import Schema, TensorSpec

        from benchmark.training.fit import load_fold_model

        model = load_fold_model(path)
        shape, outputs = model.input_shape[1:], model.output_shape[-1]
        signature = ModelSignature(
            inputs=Schema([TensorSpec(np.dtype(model.inputs[0].dtype), (-1, *shape), "pixels")]),
            outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, outputs), "probabilities")]),
        )
        requirements = [f"keras=={keras.__version__}", f"{keras.backend.backend()}"]  # no slow inference of them
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.keras.save_model(model, f"{tmp}/model", signature=signature, pip_requirements=requirements)
            self.client.log_artifacts(run_id, f"{tmp}/model", artifact_path=artifact_path)

    def finish(self) -> None:
        """At the end of a run: the report, leaderboard and results as the parent's artifacts."""
        if self.off:
            return
        with self._calls("the report"):
            parent = self._parent()
            for path in (self.folder.report_html, self.folder.leaderboard, self.folder.results):
                if path.exists():
                    self.client.log_artifact(parent, str(path))
            self.client.set_terminated(parent)


def _url(uri: str | None, experiment_id: str, run_id: str) -> str:
    """Where a server shows the run, in words (nothing for a local store: `mlflow ui` shows it)."""
    if not uri or not uri.startswith(("http://", "https://")):
        return ""
    return f" at {uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def _reason(err: Exception) -> str:
    """Why a call failed, short: the system's word where there is one ("[Errno 111] Connection refused")."""
    text = str(err).strip()
    if found := re.search(r"\[Errno -?\d+\] [^'\")\]]+", text):
        return found.group(0).strip()
    return ": ".join([type(err).__name__, *(line[:200] for line in text.splitlines()[:1])])


def _params(values: dict) -> list:
    from mlflow.entities import Param

    return [Param(str(k), str(v)[:6000]) for k, v in values.items()]


def _metrics(values: dict, step: int = 0) -> list:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step) for k, v in values.items() if v == v]  # not NaN


def _curves(history: dict) -> list:
    """Every epoch's loss, val_loss ... as ``epoch/<name>`` metrics with the epoch as their step."""
    return [m for key, values in history.items() for step, v in enumerate(values, 1)
            for m in _metrics({f"epoch/{key}": v}, step)]  # fmt: skip


@contextmanager
def _environment(**values: str):
    """``values`` set in the environment while MLflow's client reads them (at every request)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
