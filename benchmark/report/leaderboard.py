"""Reporting, in words: the leaderboard table, the loss-curve table and the verdicts.

Shared by ``leaderboard.md`` (written with results.json) and the report's sections.
"""

from __future__ import annotations

import numpy as np
from tabulate import tabulate

from benchmark.evaluation.metrics import METRICS
from benchmark.store.results import ArchResult, RunInfo, RunResults, Summary


def _pm(metric: Summary) -> str:
    return f"{metric.mean:.3f} ± {metric.std:.3f}"


def run_line(run: RunInfo) -> str:
    return (
        f"{run.folds}-fold stratified CV (seed {run.seed}) on {run.n_images} images of {run.data}, "
        f"{run.image_size} px; ranked by {run.rank_by}; mean ± std over folds, "
        + ("threshold 0.5." if run.binary else "each image to its most probable class.")
    )


def ranked_metrics(rank_by: str, entries: list[ArchResult]) -> list[str]:
    """Every metric of the task (those the entries have), the ranking one first."""
    names = next((list(e.metrics) for e in entries if e.scored), list(METRICS))
    return [rank_by] + [m for m in names if m != rank_by]


CURVE_HEADERS = [
    "architecture",
    "val-loss variance",
    "oscillation",
    "gap at best",
    "best epoch per fold",
    "epochs per fold",
    "suggested patience",
]


def curve_row(entry: ArchResult) -> list:
    """One architecture's loss-curve diagnostics, as the CURVE_HEADERS columns."""
    c = entry.curves
    return [
        entry.name,
        f"{c['val_loss_variance']:.2g}",
        f"{c['oscillation']['mean']:.2f}",
        f"{c['gap']['mean']:+.3f}",
        " ".join(map(str, c["best_epoch"])),
        " ".join(map(str, c["epochs"])),
        c["suggested_patience"],
    ]


def leaderboard_text(results: RunResults) -> str:
    """The tables and the verdict, as printed at the end of a run."""
    text = leaderboard(results.architectures, results.rank_by)
    return f"{text}\n\n{verdict(results.comparison)}" if results.comparison else text


def leaderboard_md(run: RunInfo, text: str) -> str:
    """``leaderboard.md``: the run in one line, then :func:`leaderboard_text`."""
    return f"# Leaderboard\n\n{run_line(run)}\n\n{text}\n"


def leaderboard(entries: list[ArchResult], rank_by: str) -> str:
    """The ranked table (markdown pipe table), then the loss-curve diagnostics, then failures."""
    shown = ranked_metrics(rank_by, entries)
    scored = [e for e in entries if e.scored]
    rows = [
        [e.rank or "-", e.name + ("" if e.ok else " (failed)")]
        + [_pm(e.metrics[m]) for m in shown]
        + [
            f"{e.params:,}",
            f"{sum(e.curves['epochs']) / len(e.curves['epochs']):.1f}",
            f"{sum(e.fit_seconds) / len(e.fit_seconds):.0f}",
        ]
        for e in scored
    ]
    table = tabulate(
        rows,
        headers=["rank", "architecture", *shown, "params", "epochs", "fit s/fold"],
        tablefmt="pipe",
        disable_numparse=True,
        colalign=("right", "left", *["right"] * (len(shown) + 3)),
    )
    curves = tabulate(
        [curve_row(e) for e in scored],
        headers=CURVE_HEADERS,
        tablefmt="pipe",
        disable_numparse=True,
        colalign=("left", *["right"] * (len(CURVE_HEADERS) - 1)),
    )
    text = f"{table}\n\nLoss curves (across folds)\n\n{curves}"
    failed = [e for e in entries if not e.ok]
    if failed:
        text += "\n\nFailed\n\n" + "\n".join(f"- {e.name}: {e.error}" for e in failed)
    return text


def runner_up_verdict(comparison: dict) -> str:
    """The best against the runner-up on the ranking metric, in words."""
    metric, best = comparison["metric"], comparison["best"]
    runner_up, r = next(iter(comparison["best_vs"].items()))
    words = (
        "significant at the 0.05 level."
        if r["p"] < 0.05
        else "not significant at the 0.05 level (with few folds the test has little power)."
    )
    test = comparison.get("test", "Nadeau–Bengio corrected resampled t-test")
    holm = comparison.get("p_values_holm")
    adjusted = f" (Holm-adjusted over all pairs: {holm[best][runner_up]:.3g})" if holm and len(holm) > 2 else ""
    return (
        f"{best} vs the runner-up {runner_up} on {metric}: difference {r['mean_difference']:+.4f} "
        f"(95 % CI {r['ci_low']:+.4f} to {r['ci_high']:+.4f}), {test} p = {r['p']:.3g}{adjusted}: {words}"
    )


def friedman_sentence(comparison: dict) -> str | None:
    """Friedman's test over all architectures in words; None with fewer than three."""
    f = comparison["friedman"]
    if not np.isfinite(f["statistic"]):
        return None
    ranks = ", ".join(f"{n} {v:.1f}" for n, v in sorted(f["average_ranks"].items(), key=lambda kv: kv[1]))
    return (
        f"Friedman test over {len(f['average_ranks'])} architectures: chi² = {f['statistic']:.2f}, "
        f"p = {f['p']:.3g}. Average ranks (1 = best): {ranks}; two ranks differ significantly "
        f"(Nemenyi, 0.05) when more than {f['critical_difference']:.2f} apart."
    )


def verdict(comparison: dict) -> str:
    """The best against the runner-up, and Friedman over all, in words."""
    return "\n\n".join(s for s in (runner_up_verdict(comparison), friedman_sentence(comparison)) if s)
