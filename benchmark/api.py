"""The Python API, for notebooks: ``benchmark.run(...)`` and ``benchmark.load(run_dir)``.

>>> import benchmark
>>> results = benchmark.load("tests/fixtures/run")
>>> results.leaderboard[["rank", "architecture", "status"]].values.tolist()
[[1.0, 'separable', 'ok'], [2.0, 'pyramid_up', 'ok'], [3.0, 'baseline', 'ok'], [nan, 'zz_broken', 'failed']]
>>> float(round(results.leaderboard.f1[0], 3)), results.status
(0.71, 1)
>>> best = results.architectures[0]
>>> best.name, best.status, [round(v, 3) for v in best.metrics["f1"].ci]
('separable', <Status.OK: 'ok'>, [0.378, 1.0])
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from benchmark import UsageError
from benchmark.config import RunConfig, default_data_dir, defaults
from benchmark.evaluation import read
from benchmark.store import ArchResult, RunFolder, RunResults

LOG = logging.getLogger("benchmark")


@dataclass(repr=False)
class Results:
    """A finished (or partial) run, read back from its run folder (its typed results) with a leaderboard frame."""

    results: RunResults  # results.json typed, with config.json, folds.csv and oof.csv
    leaderboard: pd.DataFrame  # one row per architecture, in rank order: each metric's mean and std
    status: int  # 0, or 1 when an architecture failed

    path = property(lambda self: self.results.folder.path)
    run = property(lambda self: self.results.info)  # what was run: data, folds, seed, classes, rank_by ...
    architectures = property(lambda self: self.results.architectures)  # ArchResult, in rank order
    folds = property(lambda self: self.results.folds)  # one row per architecture × fold (folds.csv)
    oof = property(lambda self: self.results.oof)  # out-of-fold probabilities (oof.csv)
    comparison = property(lambda self: self.results.comparison)  # the statistical comparison on the ranking metric
    transfer = property(lambda self: self.results.transfer)  # whether the CV ranking holds on the held-out split
    heldout = property(lambda self: self.results.heldout)  # each architecture's scores on the held-out split

    @property
    def report(self) -> Path:
        return self.results.folder.report_html

    def predict(self, images, arch: str = "winner", threshold: str = "youden", model: str = "folds") -> pd.DataFrame:
        """``benchmark predict``: the fold ensemble of ``arch`` (or its refit: ``model="refit"``) on image files or
        folders, one row per readable image (path, predicted class, probabilities, their spread over the fold
        models)."""
        from benchmark.use import predict

        paths = [images] if isinstance(images, str | Path) else list(images)
        return predict(self.path, paths, arch, threshold, log=LOG.info, model=model)[0]

    def refit(self, arch: str = "winner") -> dict:
        """``benchmark refit``: ``arch`` trained once more on all training images; its refit.json, also in
        ``refits`` and the report from now on. A failed training raises RuntimeError."""
        from benchmark.use import refit

        record = refit(self.path, arch, log=LOG.info)
        if "error" in record:
            raise RuntimeError(f"{record['architecture']}: the refit failed: {record['error']}")
        self.results = read(self.results.folder)
        return record

    def evaluate(self, folder: str | Path, name: str | None = None) -> dict:
        """``benchmark evaluate``: every architecture on another labelled folder (a site); the site's summary,
        also in ``sites`` and the report from now on."""
        from benchmark.use import evaluate

        site = evaluate(self.path, folder, name, log=LOG.info)
        self.results = read(self.results.folder)
        return site

    def export(self, fmt: str = "keras", out: str | Path | None = None, arch: str = "winner", model: str = "folds"):
        """``benchmark export``: the fold ensemble of ``arch`` (or its refit) as one model (keras, onnx or
        savedmodel) with model.json beside it; the model's path."""
        from benchmark.use import export

        return export(self.path, arch, fmt, out, log=LOG.info, model=model)

    sites = property(lambda self: self.results.sites)  # `evaluate`'s sites, by name
    refits = property(lambda self: self.results.refits)  # `refit`'s models, by architecture

    def summary(self) -> pd.DataFrame:
        """The leaderboard's main columns (the ranking metric, ROC-AUC, size and cost), errors only where one failed."""
        metric = self.run.rank_by
        columns = ["rank", "architecture", "status", metric, f"{metric}_std", "roc_auc", "params", "fit_seconds"]
        board = self.leaderboard
        shown = board[[c for c in dict.fromkeys(columns) if c in board]]
        if board["error"].notna().any():
            shown = shown.assign(error=board["error"].fillna(""))
        return shown

    def __repr__(self) -> str:  # short, like a DataFrame's: where the run is and how it ranked
        table = self.summary().to_string(index=False, float_format="%.3f", na_rep="")
        return f"Results of {self.path} (status {self.status})\n{table}"

    def _repr_html_(self) -> str:  # a notebook shows the leaderboard
        table = self.summary().to_html(index=False, float_format="%.3f", na_rep="")
        return f"<p>Results of {html.escape(str(self.path))} (status {self.status})</p>{table}"


def run(
    data: str | Path | None = None,
    out: str | Path | None = None,
    *,
    progress: Callable[[dict], None] | None = None,
    **settings,
) -> Results:
    """Run the benchmark as ``benchmark run`` does and return its :class:`Results`.

    ``settings`` are ``benchmark run``'s flags by their names (``folds=5, archs="all",
    image_size=56, groups="kermany", ...``) with the same defaults and checks; ``data``
    defaults as ``--data`` does, ``out`` to ``reports/<timestamp>``. ``progress`` receives
    each epoch and fold as a dict; messages also go to the ``benchmark`` logger, and to standard
    error unless ``quiet=True``. The backends' own output goes to the run folder's ``run.log``, as
    the command line's does; the leaderboard is the returned :class:`Results`, not printed.
    """
    from benchmark.console import Console
    from benchmark.runner import run as run_benchmark  # the backend is imported only when a run starts

    if isinstance(settings.get("arch_modules"), str | Path):
        settings["arch_modules"] = (settings["arch_modules"],)
    out = Path(out) if out else Path("reports") / datetime.now().strftime("%Y%m%d-%H%M%S")
    data = Path(data) if data else default_data_dir()
    try:
        with Console() as console:
            config = RunConfig.from_flat(data=data, out=out, **settings)
            status = run_benchmark(config, callback=progress, console=console, table=False)
    except UsageError as err:  # named as it was typed here: val_fraction=1.5, not --val-fraction 1.5
        raise err.in_python({**defaults(), **settings, "data": data, "out": out}) from None
    return load(out, status)


def load(run_dir: str | Path, status: int | None = None) -> Results:
    """The :class:`Results` of a run folder written by ``benchmark run`` or :func:`run`."""
    results = read(RunFolder(Path(run_dir)))
    return Results(results, leaderboard_frame(results.architectures), results.status if status is None else status)


def leaderboard_frame(entries: list[ArchResult]) -> pd.DataFrame:
    """One row per architecture: rank, name, status, each metric's mean (``<metric>``) and std
    (``<metric>_std``), parameters and mean fit seconds per fold."""
    rows = []
    for e in entries:
        row = {"rank": e.rank, "architecture": e.name, "status": e.status.value}
        for metric, value in e.metrics.items():
            row[metric], row[f"{metric}_std"] = value.mean, value.std
        row["params"] = e.params
        row["fit_seconds"] = sum(e.fit_seconds) / len(e.fit_seconds) if e.fit_seconds else None
        row["error"] = e.error
        rows.append(row)
    return pd.DataFrame(rows)
