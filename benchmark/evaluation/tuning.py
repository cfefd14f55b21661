"""Evaluation, tuned: an architecture's nested search over its folds (``--tune``), from each fold's saved record.

What each fold chose and whether the choice sits at the edge of what was searched, the tuning's cost, and
the expected best inner-validation loss as a function of the number of trials (Dodge et al. 2019, "Show
Your Work": the expected maximum of n draws from the trials' scores, here the minimum of the losses).
"""

from __future__ import annotations

import numpy as np


def expected_best(losses: list[float], n: int) -> float:
    """The expected lowest of ``n`` losses drawn with replacement from ``losses`` (Dodge et al. 2019's
    estimator, for a loss): ``Σ_i v_(i) · (((T−i+1)/T)^n − ((T−i)/T)^n)`` over the sorted losses ``v``.

    >>> expected_best([0.5, 0.3], 1), expected_best([0.5, 0.3], 2)
    (0.4, 0.35)
    """
    v = np.sort(np.asarray(losses, dtype=float))
    t = len(v)
    i = np.arange(1, t + 1)
    weights = ((t - i + 1) / t) ** n - ((t - i) / t) ** n
    return float(round(np.sum(v * weights), 12))


def budget_curve(inner_losses: list[list[float | None]]) -> list[float]:
    """The expected best inner loss with 1, 2, ... T trials, averaged over the folds (failed trials left out)."""
    folds = [[x for x in losses if x is not None] for losses in inner_losses]
    folds = [f for f in folds if f]
    size = max((len(f) for f in folds), default=0)
    return [float(np.mean([expected_best(f, n) for f in folds])) for n in range(1, size + 1)]


def at_edge(trials: list[dict], values: dict) -> list[str]:
    """The numeric settings of ``values`` (one fold's choice) at the lowest or highest value the trials tried:
    the best may lie beyond what was searched.

    >>> at_edge([{"lr": 1e-3, "augment": "light"}, {"lr": 3e-3, "augment": "strong"}], {"lr": 3e-3, "augment": "light"})
    ['lr']
    """
    edges = []
    for name, value in values.items():
        tried = [t[name] for t in trials]
        if isinstance(value, int | float) and len(set(tried)) > 1 and value in (min(tried), max(tried)):
            edges.append(name)
    return edges


def tuning_summary(records: list[dict]) -> dict | None:
    """results.json's ``tuning`` of one architecture, from its folds' records (None when it was not tuned):
    the trials, each fold's choice with its settings at an edge, the inner losses, the cost (trainings,
    epochs, seconds) and the budget curve."""
    tunings = [r["tuning"] for r in records if "tuning" in r]
    if not tunings:
        return None
    trials = tunings[0]["trials"]
    losses = [t["inner_loss"] for t in tunings]
    return {
        "trials": trials,
        "chosen": [t["chosen"] for t in tunings],
        "values": [t["values"] for t in tunings],
        "edge": [at_edge(trials, t["values"]) for t in tunings],
        "inner_loss": losses,
        "trainings": sum(x is not None for fold in losses for x in fold),
        "epochs": sum(e for t in tunings for e in t["epochs"] if e),
        "seconds": sum(s for t in tunings for s in t["fit_seconds"] if s),
        "budget": budget_curve(losses),
    }
