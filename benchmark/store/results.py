"""The typed read model of a finished (or partial) run: results.json as dataclasses.

The evaluation stage writes results.json as JSON at every publication; everything that reads a run
(the report, ``benchmark compare``, the trackers, ``benchmark.load``) reads it as a :class:`RunResults`,
made by :func:`parse`. The defaults of files written by older versions are applied here, once;
what an older file lacks and must be computed is completed by the evaluation stage before parsing
(:func:`benchmark.evaluation.results.read`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:  # runfolder checks results.json's shape with Status
    from benchmark.store.runfolder import RunFolder


class Status(str, Enum):
    """An architecture's outcome; written to results.json as its value (``"ok"``, ``"failed"``)."""

    OK = "ok"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Summary:
    """One metric over an architecture's folds: mean, sample std, the fold values and the corrected 95 %
    interval of the mean (clipped to the metric's range)."""

    mean: float
    std: float
    folds: list[float]
    ci: tuple[float, float]


@dataclass
class ArchResult:
    """One architecture's entry of results.json, in rank order (failed ones last, unranked)."""

    name: str
    rank: int | None
    status: Status
    description: str = ""
    tags: tuple[str, ...] = ()
    folds_done: int = 0
    params: int | None = None
    error: str | None = None
    metrics: dict[str, Summary] = field(default_factory=dict)  # empty when no fold finished
    confusion_matrix: list | None = None  # summed over the folds
    curves: dict | None = None  # loss-curve statistics (evaluation.metrics.curve_statistics)
    test_fraction: float | None = None  # mean n_score / n_fit: the intervals' and t-tests' correction
    fit_seconds: list[float] = field(default_factory=list)
    predict_seconds: list[float] = field(default_factory=list)
    tuning: dict | None = None  # --tune: evaluation.tuning.tuning_summary (None: not tuned)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def scored(self) -> bool:
        """Whether any fold finished (a failed architecture may have some)."""
        return bool(self.metrics)


@dataclass(frozen=True)
class RunInfo:
    """results.json's ``run``: what was run, on which data, where."""

    data: str
    folds: int  # k: folds per repeat
    rank_by: str
    class_names: tuple[str, ...]
    seed: int | None = None
    image_size: int | None = None
    repeats: int = 1
    n_images: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    test_counts: dict[str, int] | None = None
    skipped: dict = field(default_factory=dict)
    splits: str = "stratified k-fold"
    backend: str | None = None
    devices: tuple[str, ...] = ()
    wall_seconds: float = 0.0

    @property
    def n_folds(self) -> int:
        """Fold models per architecture (folds × repeats; fold j = fold j mod k of repeat j div k)."""
        return self.folds * self.repeats

    @property
    def binary(self) -> bool:
        return len(self.class_names) == 2

    @property
    def positive(self) -> str | None:
        """The positive class of a two-class task (None with more classes)."""
        return self.class_names[1] if self.binary else None


@dataclass
class RunResults:
    """A run folder read back: results.json typed, config.json, folds.csv and oof.csv."""

    folder: RunFolder
    info: RunInfo
    architectures: list[ArchResult]  # rank order, failed last
    comparison: dict | None  # evaluation.comparison.pairwise_comparison on the ranking metric
    transfer: dict | None  # evaluation.heldout.ranking_transfer
    heldout: dict[str, dict]  # evaluation.heldout.heldout_scores: each architecture on the test split
    oof_scores: dict[str, dict]  # evaluation.heldout.oof_scores: out-of-fold decisions
    config: dict = field(default_factory=dict)  # config.json (settings, versions, machine, weights)
    folds: pd.DataFrame = field(default_factory=pd.DataFrame)  # folds.csv: architecture × fold
    oof: pd.DataFrame = field(default_factory=pd.DataFrame)  # oof.csv: out-of-fold probabilities
    sites: dict[str, dict] = field(default_factory=dict)  # `benchmark evaluate`'s sites/<name>/site.json, by name
    refits: dict[str, dict] = field(default_factory=dict)  # `benchmark refit`'s <arch>/refit/refit.json, by name

    @property
    def rank_by(self) -> str:
        return self.info.rank_by

    @property
    def ok(self) -> list[ArchResult]:
        return [a for a in self.architectures if a.ok]

    @property
    def settings(self) -> dict:
        return self.config.get("settings", {})

    @property
    def batch_size(self) -> int:
        """The run's --batch-size, for predicting with its saved models (64, the default, if config.json lacks it)."""
        return self.settings.get("batch_size", 64)

    @property
    def status(self) -> int:
        """The exit status of the run that wrote it: 0, or 1 when an architecture failed."""
        return int(any(not a.ok for a in self.architectures))

    def arch(self, name: str) -> ArchResult:
        return next(a for a in self.architectures if a.name == name)


def parse(
    results: dict, folder: RunFolder, config: dict | None = None, folds=None, oof=None, sites=None, refits=None
) -> RunResults:
    """``results`` (results.json's content, completed where older: see the module) as a :class:`RunResults`.
    Raises KeyError, TypeError or ValueError where its shape is not what ``benchmark run`` writes."""
    return RunResults(
        folder=folder,
        info=run_info(results["run"]),
        architectures=[_arch(e) for e in results["architectures"]],
        comparison=results.get("comparison"),
        transfer=results.get("transfer"),
        heldout=results.get("heldout", {}),
        oof_scores=results.get("oof_scores", {}),
        config=config or {},
        folds=pd.DataFrame() if folds is None else folds,
        oof=pd.DataFrame() if oof is None else oof,
        sites=sites or {},
        refits=refits or {},
    )


def run_info(run: dict) -> RunInfo:
    """results.json's ``run`` typed, with the defaults of older files."""
    classes = run["classes"]  # before K classes: only the negative and positive one were named
    names = run.get("class_names") or [classes["negative"], classes["positive"]]
    return RunInfo(
        data=str(run.get("data", "")),
        folds=int(run["folds"]),
        rank_by=str(run["rank_by"]),
        class_names=tuple(str(c) for c in names),
        seed=run.get("seed"),
        image_size=run.get("image_size"),
        repeats=int(run.get("repeats", 1)),
        n_images=run.get("n_images"),
        counts=run.get("counts", {}),
        test_counts=run.get("test_counts"),
        skipped=run.get("skipped", {}),
        splits=run.get("splits", "stratified k-fold"),
        backend=run.get("backend"),
        devices=tuple(run.get("devices", ())),
        wall_seconds=float(run.get("wall_seconds", 0.0)),
    )


def _arch(entry: dict) -> ArchResult:
    metrics = {m: _summary(s) for m, s in entry.get("metrics", {}).items()}
    return ArchResult(
        name=str(entry["name"]),
        rank=entry.get("rank"),
        status=Status(entry["status"]),
        description=entry.get("description", ""),
        tags=tuple(entry.get("tags", ())),
        folds_done=int(entry.get("folds_done", 0)),
        params=entry.get("params"),
        error=entry.get("error"),
        metrics=metrics,
        confusion_matrix=entry.get("confusion_matrix"),
        curves=entry.get("curves"),
        test_fraction=float(entry["test_fraction"]) if metrics else None,
        fit_seconds=list(entry.get("fit_seconds", [])),
        predict_seconds=list(entry.get("predict_seconds", [])),
        tuning=entry.get("tuning"),
    )


def _summary(values: dict) -> Summary:
    folds = [float(v) for v in values["folds"]]
    low, high = values["ci"]  # computed at publication, or by the evaluation stage for an older file
    return Summary(float(values["mean"]), float(values["std"]), folds, (float(low), float(high)))
