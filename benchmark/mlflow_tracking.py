"""Stage 5 — the run folder in MLflow (``--track mlflow``): one parent run per benchmark, a child run
per architecture, a grandchild per fold.

- parent: every setting as a parameter; at the end ``report.html``, ``leaderboard.md`` and
  ``results.json`` as artifacts;
- architecture: its description and parameter count, then the mean and std of every metric once
  all its folds are done; the best fold's model (``--track-models best``) or every fold's (``all``);
- fold: its sizes, seed, class weights and output bias as parameters, loss and val_loss (and the
  other curves) at every epoch, and its metrics.

The run ids are kept in ``RUN/tracking.json``; a resumed run continues the same MLflow runs and
logs each fold and each architecture's summary once. The tracking server comes from
``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else MLflow's default local store.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

from benchmark import UsageError
from benchmark.files import read_json, write_json
from benchmark.runfolder import RunFolder
from benchmark.tracking import _scalars

EXPERIMENT = "cnn-benchmark"


class MLflow:
    def __init__(self, client, experiment_id: str, folder: RunFolder, config, state: dict):
        self.client, self.experiment_id, self.folder, self.config, self.state = (
            client, experiment_id, folder, config, state,
        )  # fmt: skip

    @classmethod
    def start(cls, folder: RunFolder, config) -> MLflow | None:
        """Connect, and open (or reopen, on resume) the parent run; None when the server cannot be
        reached and ``--track-optional`` was given (after a warning)."""
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise UsageError("--track mlflow needs MLflow: pip install -e '.[mlflow]', then run again.") from None
        uri = config.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
        client = MlflowClient(tracking_uri=uri)
        try:
            with _no_retries():
                experiment = client.get_experiment_by_name(EXPERIMENT)
                experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
        except Exception as err:  # unreachable, refused, wrong scheme: MLflow raises many kinds
            where = uri or "MLflow's default local store"
            reason = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            if config.track_optional:
                print(f"warning: MLflow at {where} cannot be reached ({reason}); going on without tracking.")
                return None
            raise UsageError(
                f"--track mlflow: the tracking server at {where} cannot be reached ({reason}). Start it, fix "
                "--tracking-uri / MLFLOW_TRACKING_URI, or add --track-optional to run without tracking."
            ) from None
        tracker = cls(client, experiment_id, folder, config, read_json(folder.tracking) or {"folds": {}, "archs": {}})
        tracker._parent()
        return tracker

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

    def fold(self, arch: str, fold: int, record: dict, history: dict) -> None:
        key = f"{arch}/{fold}"
        if key in self.state["folds"]:
            return  # logged by an earlier invocation
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{arch} fold {fold + 1}",
            tags={"mlflow.parentRunId": self._arch(arch), "architecture": arch, "fold": str(fold)},
        )
        run_id = run.info.run_id
        params = {k: record[k] for k in ("seed", "batch_size", "n_fit", "n_val", "n_score", "epochs", "best_epoch")}
        params |= {f"class_weight_{c}": w for c, w in record["class_weight"].items()}
        params["initial_bias"] = record["initial_bias"]
        self.client.log_batch(run_id, params=_params(params), metrics=_curves(history))
        self.client.log_batch(run_id, metrics=_metrics(_scalars(record["metrics"])))
        self.client.set_terminated(run_id)
        self.state["folds"][key] = run_id
        self._save()

    def published(self, results: dict) -> None:
        run = results["run"]
        for entry in results["architectures"]:
            done = entry["status"] == "ok" and entry["folds_done"] == run["folds"] * run.get("repeats", 1)
            if not done or self.state["archs"].get(entry["name"], {}).get("summary"):
                continue
            run_id = self._arch(entry["name"])
            means = {f"{m}_mean": v["mean"] for m, v in entry["metrics"].items()}
            stds = {f"{m}_std": v["std"] for m, v in entry["metrics"].items()}
            facts = {"params": entry["params"], "description": entry["description"][:500], "rank": entry["rank"]}
            self.client.log_batch(run_id, metrics=_metrics(means | stds), params=_params(facts))
            self._models(entry, run_id)
            self.client.set_terminated(run_id)
            self.state["archs"][entry["name"]]["summary"] = True
            self._save()

    def _models(self, entry: dict, run_id: str) -> None:
        folds = entry["metrics"][self.config.rank_by]["folds"]
        if self.config.track_models == "none":
            return
        chosen = range(len(folds))
        if self.config.track_models == "best":
            pick = min if self.config.rank_by == "log_loss" else max
            chosen = [pick(chosen, key=lambda i: folds[i])]
        for i in chosen:
            path = self.folder.model_path(entry["name"], i)
            if path.exists():
                self.client.log_artifact(run_id, str(path), artifact_path=f"fold-{i}")

    def finish(self) -> None:
        """At the end of a run: the report, leaderboard and results as the parent's artifacts."""
        parent = self._parent()
        for path in (self.folder.report_html, self.folder.leaderboard, self.folder.results):
            if path.exists():
                self.client.log_artifact(parent, str(path))
        self.client.set_terminated(parent)


def _params(values: dict) -> list:
    from mlflow.entities import Param

    return [Param(str(k), str(v)[:6000]) for k, v in values.items()]


def _metrics(values: dict, step: int = 0) -> list:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k.replace("/", "_"), float(v), now, step) for k, v in values.items() if v == v]  # not NaN


def _curves(history: dict) -> list:
    """Every epoch's loss, val_loss ... as MLflow metrics with the epoch as their step."""
    return [m for key, values in history.items() for step, v in enumerate(values, 1) for m in _metrics({key: v}, step)]


@contextmanager
def _no_retries():
    """The first contact fails fast (MLflow retries an unreachable server for minutes by default)."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="10")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
