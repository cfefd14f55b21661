"""Tracking: the run folder mirrored as TensorBoard event files (:mod:`.tensorboard`) and MLflow runs
(:mod:`.mlflow_tracking`) of the same numbers.

A tracker hears of every fold that starts training in this process (``started``), of every finished
fold (``fold``; saved folds too, when a run resumes, so a tracker added later catches up), of every
publication of the results (``published``) and of the run's end (``finish``). Each keeps track of
what it has already written, so a resumed run writes nothing twice.
"""

from __future__ import annotations

import re
from typing import Protocol

from benchmark.store.results import RunResults


class Tracker(Protocol):
    def started(self, arch: str, fold: int) -> None: ...

    def fold(self, arch: str, fold: int, record: dict, history: dict) -> None: ...

    def published(self, results: RunResults) -> None: ...

    def finish(self) -> None: ...


def trackers(config, folder) -> list[Tracker]:
    """The trackers ``config`` asks for (each imported only when asked for)."""
    found: list = []
    if config.tracking.tensorboard:
        from benchmark.tracking.tensorboard import TensorBoard

        found.append(TensorBoard(folder, config.to_dict()))
    if config.tracking.track == "mlflow":
        from benchmark.tracking.mlflow_tracking import MLflow

        found.append(MLflow.start(folder, config))
    return [t for t in found if t is not None]


def scalars(metrics: dict) -> dict[str, float]:
    """The single-number metrics of a metrics.json (per-class ones flattened to ``class_<c>/<metric>``);
    the names both trackers show, after ``fold/``."""
    out = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and k != "threshold"}
    for c, values in metrics.get("per_class", {}).items():
        out |= {f"class_{_name(c)}/{k}": float(v) for k, v in values.items()}
    return out


def _name(text: str) -> str:
    """A class name as a part of a metric name (MLflow allows letters, digits, _ - . space : /)."""
    return re.sub(r"[^\w.\- :]", "_", str(text)).strip(". ") or "_"
