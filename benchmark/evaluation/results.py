"""Evaluation, read back: a run folder's results as the typed :class:`~benchmark.store.results.RunResults`.

What a results.json written by an older version lacks is computed here, once, from the saved
predictions; every reader (report, ``benchmark compare``, ``benchmark.load``) goes through :func:`read`.
"""

from __future__ import annotations

import pandas as pd

from benchmark import UsageError
from benchmark.evaluation.comparison import summary
from benchmark.evaluation.heldout import cv_means, heldout_scores, heldout_transfer, oof_scores, read_all
from benchmark.store.files import read_json
from benchmark.store.results import RunResults, Status, parse, run_info
from benchmark.store.runfolder import RunFolder

SHAPE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError, ZeroDivisionError)


def read(folder: RunFolder) -> RunResults:
    """The run folder's results, completed where older; a file of the wrong shape is a UsageError naming it."""
    saved = folder.read_results()
    try:
        results = completed(saved["results"], folder, saved["oof"])
    except (OSError, *SHAPE_ERRORS) as err:
        raise UsageError(
            f"{folder.path}: its results.json predates this version and cannot be completed from the saved "
            f"predictions ({err!r}): a fold's test_predictions.csv or the oof.csv is damaged. Delete the damaged file "
            f"and rerun `benchmark run` with --out {folder.path}: finished folds are read, not trained, the deleted "
            "predictions made again and the results written in today's format."
        ) from None
    sites = [read_json(path) for path in sorted(folder.sites.glob("*/site.json"))]
    refits = [read_json(path) for path in sorted(folder.path.glob("*/refit/refit.json"))]
    try:
        return parse(results, folder, saved["config"], saved["folds"], saved["oof"], {s["name"]: s for s in sites if s},
                     {r["architecture"]: r for r in refits if r})  # fmt: skip
    except SHAPE_ERRORS as err:
        raise folder.damaged(folder.results, f"an entry is missing or of the wrong kind ({err!r})") from None


def completed(results: dict, folder: RunFolder, oof: pd.DataFrame) -> dict:
    """``results`` with what an older results.json lacks computed from its saved predictions: the held-out
    and out-of-fold scores, each metric's interval, and a ranking transfer saved before the paired tests
    against the CV winner (so its verdict follows today's rule)."""
    info, entries = run_info(results["run"]), results["architectures"]
    names = [e["name"] for e in entries if e["status"] == Status.OK]
    transfer, missing = results.get("transfer"), {k for k in ("heldout", "oof_scores") if k not in results}
    if any("ci" not in row for scores in results.get("heldout", {}).values() for row in scores["ensemble"]):
        missing.add("heldout")  # written before the held-out figures had their intervals (format 4)
    old_transfer = transfer is not None and "paired" not in transfer
    heldout = read_all(folder, entries, info.n_folds) if "heldout" in missing or old_transfer else {}
    results = {**results, "architectures": [_with_intervals(e, 1 / (info.folds - 1)) for e in entries]}
    if "heldout" in missing:
        results["heldout"] = heldout_scores(heldout, oof)
    if "oof_scores" in missing:
        results["oof_scores"] = oof_scores(oof, names)
    if old_transfer:
        results["transfer"] = heldout_transfer(heldout, cv_means(entries, info.rank_by), info.rank_by)
    return results


def _with_intervals(entry: dict, test_fraction: float) -> dict:
    """An entry whose metrics have their interval (``ci``, results.json format 3), computed as at publication
    where it lacks one; ``test_fraction`` is k folds' 1/(k − 1) where the entry lacks its own (early versions)."""
    metrics = entry.get("metrics")
    if not isinstance(metrics, dict) or all("ci" in m for m in metrics.values()):
        return entry
    ratio = entry.get("test_fraction", test_fraction)
    return {**entry, "test_fraction": ratio, "metrics": {m: summary(s["folds"], ratio, m) for m, s in metrics.items()}}
