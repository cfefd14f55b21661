"""Reporting: the report's sections, one builder each, from a run folder alone.

Everything shown is read back from the saved files (results.json, folds.csv,
oof.csv, each fold's history.csv and test predictions), so ``benchmark report
RUN_DIR`` rebuilds the report of a finished, resumed or partial run without
training anything. :mod:`benchmark.report.render` writes the sections as markdown and HTML.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pandas as pd

from architectures._applications import PREFIX
from benchmark.evaluation.diagnostics import EARLY_BEST, FOLD_STD, OSCILLATION, OVERFIT_GAP, flags
from benchmark.evaluation.metrics import PER_CLASS, THRESHOLD_FREE, better
from benchmark.inference.predict import fold_ensemble, read_heldout, site_predictions
from benchmark.report import plots
from benchmark.report.leaderboard import CURVE_HEADERS, curve_row, friedman_sentence, ranked_metrics, runner_up_verdict
from benchmark.report.render import Code, Figure, Section, Table
from benchmark.store.results import ArchResult, RunResults
from benchmark.store.runfolder import probability_columns

HELDOUT_METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "pr_auc")
GAP_FLAG = 0.05  # a CV-vs-test difference this large is worth a look
SUMMARY_SETTINGS = (
    "folds",
    "seed",
    "image_size",
    "epochs",
    "patience",
    "batch_size",
    "lr",
    "augment",
    "label_smoothing",
)


def build_sections(r: RunResults) -> list[Section]:
    """Every section of the report (numbered when rendered), with its figures written under
    ``RUN/report_files/``. The numbers come from results.json (:func:`benchmark.evaluation.results.read`)."""
    builders = (summary, leaderboard, per_fold, statistics, curves, tuning, out_of_fold, heldout, transfer, refits,
                sites, gradcam, reproduce)  # fmt: skip
    if not r.ok:  # every architecture failed: the reasons, and how to run again; nothing to plot
        builders = (summary, leaderboard, reproduce)
    built = [build(r) for build in builders]  # a section, None (nothing to show) or a list (one per site)
    return [s for part in built if part is not None for s in (part if isinstance(part, list) else [part])]


def summary(r: RunResults) -> Section:
    """1: a forest plot of the ranking metric, the winner, the verdict against the runner-up and on the
    held-out split, the data, settings and versions."""
    parts = [forest(r)] if r.ok else []
    if r.ok:
        m = r.ok[0].metrics[r.rank_by]
        parts.append(f"Winner on {r.rank_by}: {r.ok[0].name} ({m.mean:.3f} ± {m.std:.3f}).")
    if r.comparison:
        parts.append(runner_up_verdict(r.comparison))
    if r.transfer:
        parts.append(transfer_sentence(r, r.transfer))
    run, settings = r.info, r.settings
    counts = ", ".join(f"{c} {n}" for c, n in run.counts.items())
    test = ", ".join(f"{c} {n}" for c, n in (run.test_counts or {}).items()) or "none"
    parts.append(
        f"Data: {run.data} — cross-validation images: {counts}; held-out test images: {test}; "
        f"skipped unreadable files: {len(run.skipped)}. Folds: {run.splits}."
    )
    parts.append(
        "Settings: "
        + ", ".join(f"{k} {settings[k]}" for k in SUMMARY_SETTINGS if k in settings)
        + f"; backend {run.backend} on {', '.join(run.devices)}; training time (sum of "
        f"fit over all folds) {sum(sum(e.fit_seconds) for e in r.ok) / 60:.1f} min; wall time of the last "
        f"invocation {run.wall_seconds / 60:.1f} min."
    )
    packages = r.config.get("packages", {})
    parts.append(
        "Versions: "
        + ", ".join(f"{k} {v}" for k, v in packages.items())
        + f"; machine: {r.config.get('machine', {}).get('platform', '?')}."
    )
    return Section("Summary", parts)


def leaderboard(r: RunResults) -> Section:
    """2: every metric with its interval, the ranking metric's group first; cost; failures; descriptions."""
    section = Section(
        "Leaderboard",
        [
            f"Ranked by {r.rank_by} ({'higher' if better(r.rank_by) > 0 else 'lower'} is better; ties go to "
            "the lower std). Each cell: mean ± sample std over folds [95 % confidence interval of the mean, with "
            "the same correction for overlapping training sets as the t-tests of the statistical comparison]."
        ],
    )
    shown = ranked_metrics(r.rank_by, r.architectures)
    groups = [
        ("At threshold 0.5", [m for m in shown if m not in THRESHOLD_FREE]),
        ("Threshold-free", [m for m in shown if m in THRESHOLD_FREE]),
    ]
    for caption, metrics in sorted(groups, key=lambda g: r.rank_by not in g[1]):  # the ranking metric's group first
        section.parts.append(
            Table(["rank", "architecture", *metrics], [_board_row(e, metrics) for e in r.architectures], caption)
        )
    cost = [
        [
            e.rank or "-",
            e.name,
            f"{e.params:,}",
            f"{np.mean(e.curves['epochs']):.1f}",
            f"{np.mean(e.fit_seconds):.0f}",
        ]
        for e in r.architectures
        if e.scored
    ]
    section.parts.append(Table(["rank", "architecture", "params", "mean epochs", "fit s/fold"], cost, "Cost."))
    section.parts += [f"Failed: {e.name}: {e.error}" for e in r.architectures if not e.ok]
    section.parts.append(
        Table(
            ["architecture", "source", "weights", "tags", "description"],
            [
                [
                    e.name,
                    source(e.name),
                    weights_used(r.config, e.name),
                    ", ".join(e.tags),
                    e.description,
                ]
                for e in r.architectures
            ],  # fmt: skip
        )
    )
    return section


def source(name: str) -> str:
    """Where a candidate comes from: the registry's own architectures or Keras's applications."""
    return "Keras application" if name.startswith(PREFIX) else "registry"


def weights_used(config: dict, name: str) -> str:
    """The weights a candidate started from: the file (config.json records it with its SHA-256) and the
    transfer recipe, or a random initialisation.

    >>> config = {"weights": {"keras:X": {"file": "/w/x_notop.h5", "sha256": "ab" * 32}}}
    >>> config["settings"] = {"warmup_epochs": 2}
    >>> weights_used(config, "keras:X")
    'x_notop.h5 (SHA-256 abababababab…); head warm-up 2 epochs, then fine-tuned at lr / 10, batch norm frozen'
    >>> weights_used({}, "baseline")
    'random (from scratch)'
    """
    record = (config.get("weights") or {}).get(name)
    if not record:
        return "random (from scratch)"
    return (
        f"{Path(record['file']).name} (SHA-256 {record['sha256'][:12]}…); head warm-up "
        f"{config.get('settings', {}).get('warmup_epochs', 0)} epochs, then fine-tuned at lr / 10, batch norm frozen"
    )


def forest(r: RunResults) -> Figure:
    """The summary's first figure: every architecture's ranking metric with its interval, and held out."""
    test = dict(zip(r.transfer["architectures"], r.transfer["test"], strict=True)) if r.transfer else {}
    rows = [(e.name, e.metrics[r.rank_by].mean, *e.metrics[r.rank_by].ci, test.get(e.name)) for e in r.ok]
    caption = (
        f"{r.rank_by} of each architecture, best on top: the cross-validation mean with its corrected 95 % "
        "interval" + ("; the diamond is the fold ensemble on the held-out test split." if test else ".")
    )
    return Figure(plots.forest(rows, r.rank_by, r.folder.figure("forest")), caption)


def _board_row(entry: ArchResult, metrics: list[str]) -> list:
    name = entry.name + ("" if entry.ok else " (failed)")
    if not entry.scored:
        return [entry.rank or "-", name, *["-"] * len(metrics)]
    cells = [f"{s.mean:.3f} ± {s.std:.3f} [{interval(s.ci)}]" for s in map(entry.metrics.get, metrics)]
    return [entry.rank or "-", name, *cells]


def per_fold(r: RunResults) -> Section:
    """3: the ranking metric of each architecture on each fold, as a table and box plots."""
    section = Section("Per-fold detail", [f"{r.rank_by} of each architecture on each scored fold."])
    if r.folds.empty:
        return section
    wide = r.folds.pivot(index="arch", columns="fold", values=r.rank_by)
    wide = wide.reindex([e.name for e in r.architectures if e.name in wide.index])  # rank order
    section.parts.append(
        Table(
            ["architecture", *[f"fold {c + 1}" for c in wide.columns]],
            [[a, *[f"{v:.3f}" for v in wide.loc[a]]] for a in wide.index],
        )
    )
    section.parts.append(
        Figure(
            plots.fold_boxplots(r.folds, [e.name for e in r.ok], r.folder.figure("folds")),
            "Fold-wise metrics: box plot per architecture, one dot per fold.",
        )
    )
    return section


def statistics(r: RunResults) -> Section:
    """4: the corrected t-tests, Friedman with the CD diagram, and the Bayesian correlated t-test."""
    section = Section("Statistical comparison")
    comparison = r.comparison
    if not comparison:
        section.parts.append("Fewer than two architectures completed: nothing to compare.")
        return section
    test = comparison.get("test", "Nadeau–Bengio corrected resampled t-test")
    section.parts.append(
        "How to read this: a p-value below 0.05 says the difference on "
        f"{comparison['metric']} is unlikely to be fold-to-fold noise; the {test} accounts for the "
        "overlap of training sets between folds, which a plain t-test ignores. With k folds there are only k "
        "paired values, so a large p-value is weak evidence of equality, not proof. Comparing every pair tests "
        "many hypotheses at once: the Holm-adjusted p-values control the chance of any false alarm among them."
    )
    best = comparison["best"]
    rows = [
        [
            name,
            f"{t['mean_difference']:+.4f}",
            f"[{t['ci_low']:+.4f}, {t['ci_high']:+.4f}]",
            f"{t['t']:.2f}",
            f"{t['p']:.3g}",
        ]
        for name, t in comparison["best_vs"].items()
    ]
    caption = f"The best against each other architecture ({test})."
    section.parts.append(Table([f"{best} vs", "mean difference", "95 % interval", "t", "p"], rows, caption))
    names = list(comparison["p_values"])
    holm = comparison.get("p_values_holm")
    pairs = [
        [a, *["-" if a == b else _p_cell(comparison["p_values"][a][b], holm and holm[a][b]) for b in names]]
        for a in names
    ]
    caption = "Corrected t-test p-value of every pair" + (" (Holm-adjusted in brackets)." if holm else ".")
    section.parts.append(Table(["p-value", *names], pairs, caption=caption))
    section.parts += _friedman(r, comparison) + _bayesian(comparison)
    return section


def _p_cell(p: float, adjusted: float | None) -> str:
    return f"{p:.3g}" if adjusted is None else f"{p:.3g} [{adjusted:.3g}]"


def _friedman(r: RunResults, comparison: dict) -> list:
    sentence = friedman_sentence(comparison)
    if not sentence:
        return ["Friedman's test and the critical-difference diagram need three or more architectures."]
    f = comparison["friedman"]
    return [
        sentence + " Descriptive only: Friedman's test and the Nemenyi difference assume independent blocks (data "
        "sets), and the folds of one data set are not independent.",
        Figure(
            plots.critical_difference(f["average_ranks"], f["critical_difference"], r.folder.figure("cd")),
            "Critical-difference diagram: average rank over folds (1 = best); a bar joins architectures "
            "whose average ranks differ by less than the Nemenyi critical difference (not significantly "
            "different at 0.05).",
        ),
    ]


def _bayesian(comparison: dict) -> list:
    bayesian, best = comparison.get("bayesian"), comparison["best"]
    if not bayesian:  # a results.json written when the test needed baycomp, without it
        return []
    rope = next(iter(bayesian.values()))["rope"]
    rows = [[n, f"{b['better']:.3f}", f"{b['equivalent']:.3f}", f"{b['worse']:.3f}"] for n, b in bayesian.items()]
    return [
        Table(
            [f"{best} vs", f"P({best} better)", "P(practically equal)", "P(other better)"],
            rows,
            caption=f"Bayesian correlated t-test (Corani & Benavoli 2015) on {comparison['metric']}, rope ±{rope}: "
            f"differences smaller than {rope} count as practically equal. Its Student-t posterior has the t-tests' "
            f"correction (n_test/n_train = {comparison['test_fraction']:.3f}). Read the probabilities "
            "directly: above 0.95 is a confident statement, anything else says the folds cannot decide.",
        )
    ]


def curves(r: RunResults) -> Section:
    """5: every fold's loss curves, their variance and oscillation, and the diagnostics in words."""
    histories = {e.name: [r.folder.read_history(e.name, i) for i in range(e.folds_done)] for e in r.ok}
    section = Section(
        "Loss curves and diagnostics",
        [
            "Training (dashed) and validation (solid) loss of every fold, thin; the across-fold mean of the "
            "validation loss bold; a dot marks each fold's best epoch.",
            Figure(plots.loss_curves(histories, r.folder.figure("loss_curves")), "Loss curves per architecture."),
            Figure(
                plots.curve_bars(r.ok, OSCILLATION, r.folder.figure("curve_bars")),
                "Across-fold variance of the validation loss (mean over the epochs every fold ran) and the "
                "oscillation index (share of epochs where the validation loss turns around).",
            ),
            Table(CURVE_HEADERS, [curve_row(e) for e in r.ok]),
        ],
    )
    settings = r.settings
    for e in r.ok:
        found = flags(
            e.curves, e.metrics[r.rank_by].std, r.rank_by, settings.get("epochs", 0), settings.get("patience", 0)
        )
        section.parts.append(f"{e.name}: " + ("; ".join(found) if found else "no flags") + ".")
    section.parts.append(
        f"Flag rules: oscillation index above {OSCILLATION}; validation − training loss above {OVERFIT_GAP} "
        f"at the best epoch; best epoch = last epoch = --epochs; best epoch 1 in at least {EARLY_BEST:.0%} of "
        f"folds; std of {r.rank_by} over folds above {FOLD_STD}; a fold that waited the full patience."
    )
    return section


def out_of_fold(r: RunResults) -> Section | None:
    """6: ROC/PR curves, confusion matrices (at the OOF thresholds with two classes), per-class figures
    with more, and calibration of the OOF probabilities."""
    if r.oof.empty:
        return None
    names = [e.name for e in r.ok]
    parts = ["Every training image scored once, by the fold model that did not see it (oof.csv)."]
    if r.info.binary:
        parts += [
            Figure(plots.roc_pr(r.oof, names, r.folder.figure("roc_pr")), "ROC and precision-recall curves."),
            _oof_thresholds(r, names),
        ]
    else:
        curves = plots.roc_pr_by_class(r.oof, names, r.info.class_names, r.folder.figure("roc_pr"))
        parts.append(Figure(curves, "One-vs-rest ROC and precision-recall curves, a panel per class."))
        parts += _class_tables(r, {n: r.oof_scores[n]["classes"] for n in names}, "out-of-fold")
    caption = (
        f"Reliability: mean predicted probability against the observed {r.info.positive} rate, 10 equal-width bins."
        if r.info.binary
        else "Reliability of the top label: mean probability of the predicted class against how often it is "
        "right, 10 equal-width bins."
    )
    parts.append(Figure(plots.reliability(r.oof, names, r.folder.figure("reliability")), caption))
    return Section("Out-of-fold curves", parts)


def _oof_thresholds(r: RunResults, names: list[str]) -> Table:
    rows = [
        [name, f"{c['threshold']:.3f} ({c['rule']})", c["tn"], c["fp"], c["fn"], c["tp"]]
        for name in names
        for c in r.oof_scores[name]["thresholds"]
    ]
    return Table(
        ["architecture", "threshold", "TN", "FP", "FN", "TP"],
        rows,
        caption="Confusion matrices of the out-of-fold predictions at 0.5 and at the thresholds with the "
        "highest out-of-fold F1 and the highest sensitivity + specificity (Youden's J), the rules applied "
        "to the held-out split.",
    )


def _class_tables(r: RunResults, scores: dict[str, dict], what: str) -> list[Table]:
    """Per architecture: the K×K confusion matrix and each class's metrics against the rest (argmax)."""
    classes, tables = r.info.class_names, []
    for name, m in scores.items():
        matrix = [[c, *row] for c, row in zip(classes, m["confusion_matrix"], strict=True)]
        caption = f"{name}: confusion matrix of the {what} predictions (argmax)."
        tables.append(Table(["true ↓ / predicted →", *classes], matrix, caption=caption))
        rows = [[c, *(f"{m['per_class'][str(i)][k]:.3f}" for k in PER_CLASS)] for i, c in enumerate(classes)]
        tables.append(Table(["class", *PER_CLASS], rows, caption=f"{name}: each class against the rest ({what})."))
    return tables


HELDOUT_TITLE = "Held-out test (not used for ranking)"


def heldout(r: RunResults) -> Section:
    """7: the fold ensemble and each fold model on the test split, at 0.5 and at the OOF thresholds
    (two classes) or by argmax (more)."""
    scores = {e.name: r.heldout[e.name] for e in r.ok if e.name in r.heldout}
    parts = _heldout_parts(r, scores, lambda name: read_heldout(r.folder, name, r.info.n_folds), "test split", "test")
    text = HELDOUT_TEXT if r.info.binary else HELDOUT_TEXT_MULTICLASS
    return Section(HELDOUT_TITLE, [text, *parts] if parts else [NO_HELDOUT])


def _heldout_parts(r: RunResults, scores: dict[str, dict], runs_of, where: str, key: str) -> list:
    """The held-out tables of one held-out set (``where``: the test split, or a site; ``key`` names its figure):
    the fold ensemble at each decision rule with bootstrap intervals, each fold model, the gap to CV, the curves,
    per-class tables. ``runs_of(name)``: the set's saved predictions of each fold model, for the curves."""
    rows, fold_rows, gap_rows, curves = [], [], [], []
    shown = HELDOUT_METRICS if r.info.binary else HELDOUT_MULTICLASS
    for e in (e for e in r.ok if e.name in scores):
        score = scores[e.name]
        rows += [_heldout_row(e.name, row, shown) for row in score["ensemble"]]
        fold_rows.append([e.name, *[f"{s['roc_auc']:.3f} / {s['accuracy']:.3f}" for s in score["folds"]]])
        gap_rows += _gaps(e, score["ensemble"][0]["metrics"], shown)
        runs = runs_of(e.name)
        curves.append(runs[0][["path", "label"]].assign(arch=e.name, **probability_columns(fold_ensemble(runs))))
    if not rows:
        return []
    parts = _heldout_tables(r, shown, rows, fold_rows, gap_rows, pd.concat(curves), where, key)
    if not r.info.binary:
        ensembles = {name: score["ensemble"][0]["metrics"] for name, score in scores.items()}
        parts += _class_tables(r, ensembles, f"{'held-out' if key == 'test' else where} (fold ensemble)")
    return parts


def _heldout_row(name: str, row: dict, shown) -> list:
    """One fold-ensemble row: at 0.5, at an OOF threshold (two classes) or argmax; TTA marked."""
    cells = [f"{row['metrics'][k]:.3f}" + (f" [{interval(row['ci'][k])}]" if "ci" in row else "")
             for k in shown]  # fmt: skip
    return [name, decision_label(row), *cells]


def decision_label(row: dict) -> str:
    """A held-out row's decision: 0.5, an out-of-fold threshold with its rule, or argmax; TTA marked."""
    t, rule = row["threshold"], row["rule"]
    label = rule if t is None else f"{t:.3f}" if rule == "0.5" else f"{t:.3f} ({rule})"
    return label + (" + TTA" if row["tta"] else "")


NO_HELDOUT = "No held-out predictions: the data has no test/ split, or models were not saved."
HELDOUT_TEXT = (
    "The official test split, scored once after cross-validation by each architecture's fold models; "
    "nothing here fed back into training, thresholds or ranks. Fold ensemble = the mean of the fold "
    "models' probabilities. Each architecture's first row is at 0.5; the next two at thresholds chosen on "
    "its out-of-fold predictions before looking at the test split: the highest F1, and the highest "
    "sensitivity + specificity (Youden's J, which does not depend on the share of positives). Rows "
    "marked TTA (with --tta) average each model over the image and four copies shifted by 4 % up, down, "
    "left and right."
)
HELDOUT_TEXT_MULTICLASS = (
    "The official test split, scored once after cross-validation by each architecture's fold models; "
    "nothing here fed back into training or ranks. Fold ensemble = the mean of the fold models' "
    "probabilities; each image goes to its most probable class (argmax). Rows marked TTA (with --tta) "
    "average each model over the image and four copies shifted by 4 %."
)
HELDOUT_MULTICLASS = ("accuracy", "balanced_accuracy", "f1_macro", "f1_weighted", "roc_auc", "pr_auc", "mcc")


def _gaps(entry: ArchResult, at_half: dict, shown) -> list[list]:
    rows = []
    for k in shown:
        cv = entry.metrics[k].mean
        gap = at_half[k] - cv
        flag = "large" if abs(gap) >= GAP_FLAG else ""
        rows.append([entry.name, k, f"{cv:.3f}", f"{at_half[k]:.3f}", f"{gap:+.3f}", flag])
    return rows


def _heldout_tables(r: RunResults, shown, rows, fold_rows, gap_rows, curves: pd.DataFrame, where: str, key: str):
    decision = "0.5" if r.info.binary else "argmax"
    names, path = list(curves.arch.unique()), r.folder.figure(f"{key}_roc_pr")
    figure = (
        plots.roc_pr(curves, names, path)
        if r.info.binary
        else plots.roc_pr_by_class(curves, names, r.info.class_names, path)
    )
    return [
        Table(
            ["architecture", "decision" if not r.info.binary else "threshold", *shown],
            rows,
            caption=f"Fold ensemble on the {where}: each metric with its 95 % bootstrap interval over the images.",
        ),  # fmt: skip
        Table(
            ["architecture", *[f"fold model {i + 1}" for i in range(max(len(row) - 1 for row in fold_rows))]],
            fold_rows,
            caption=f"Each fold model alone ({decision}): ROC-AUC / accuracy.",
        ),
        Table(
            ["architecture", "metric", "CV mean", f"{where} (ensemble, {decision})", "gap", f"flag (gap ≥ {GAP_FLAG})"],
            gap_rows,
            caption=f"Cross-validation against the {where}. Images collected differently from the training images "
            "(as Kaggle's chest X-ray test split was) give large gaps; they say how far CV figures transfer.",
        ),
        Figure(figure, f"ROC and precision-recall curves of the fold ensembles on the {where}."),
    ]


def transfer(r: RunResults) -> Section:
    """8: whether the cross-validation ranking holds on the held-out split."""
    if not r.transfer:
        return Section(TRANSFER_TITLE, ["Needs held-out predictions of two or more architectures."])
    return Section(TRANSFER_TITLE, _transfer_parts(r, r.transfer, "test split"))


def _transfer_parts(r: RunResults, t: dict, where: str) -> list:
    """Whether the CV ranking holds on one held-out set (``where``): the verdict, τ and ρ, the gaps, the paired
    comparisons against the CV winner."""
    decision = "at 0.5" if r.info.binary else "argmax"
    rows = [
        [name, f"{cv:.3f}", f"{test:.3f}", f"{gap:+.3f}", "large" if abs(gap) >= GAP_FLAG else ""]
        for name, cv, test, gap in zip(t["architectures"], t["cv"], t["test"], t["gap"], strict=True)
    ]
    order = sorted(range(len(t["test"])), key=lambda i: -better(r.rank_by) * t["test"][i])
    return [
        transfer_sentence(r, t, where),
        f"Kendall's τ = {_corr(t['kendall_tau'])} (95 % bootstrap interval {_ci(t['kendall_tau_ci'])}), Spearman's "
        f"ρ = {_corr(t['spearman_rho'])} ({_ci(t['spearman_rho_ci'])}), between each architecture's CV mean and "
        f"its fold ensemble on the {where}, both on {t['metric']} ({decision}); the intervals resample its images "
        f"{t['n_boot']} times. Ranked by the {where}: {', '.join(t['architectures'][i] for i in order)}.",
        Table(["architecture (CV rank order)", f"CV {t['metric']}", where, "gap", f"flag (≥ {GAP_FLAG})"], rows),
        _paired_table(t, where),
        f"The verdict claims only what the {where} shows: disagree where τ's interval lies below 0 or another "
        f"architecture beats the CV winner on its images (Holm-adjusted p < {t['alpha']}); agree where τ's "
        "interval lies above 0 and none does; otherwise not resolved — a different winner there, or τ ≤ 0, within "
        "the noise of this many images is not evidence either way.",
        "Rankings that disagree mean the CV estimate does not transfer to these images: a shift between the "
        "collections (scanner, hospital, time) or leakage inside the folds (images of one patient on both sides; "
        "see --groups). Trust the architecture whose lead holds on both.",
    ]


TRANSFER_TITLE = "Does the ranking transfer?"


def tuning(r: RunResults) -> Section | None:
    """With --tune: what each fold chose (flagged at an edge of the search), the tuning's cost, the budget curve."""
    tuned = [e for e in r.ok if e.tuning]
    if not tuned:
        return None
    trials, sample = tuned[0].tuning["trials"], r.settings.get("trials")
    how = f"a sample of {sample} drawn with seed {r.info.seed}" if sample else "the whole grid"
    rows = []
    for e in tuned:
        t = e.tuning
        chosen = [in_words(values) + (" (edge)" if edge else "") for values, edge in zip(t["values"], t["edge"],
                                                                                      strict=True)]  # fmt: skip
        rows.append([e.name, *chosen, str(t["trainings"]), str(t["epochs"]), f"{t['seconds'] / 60:.1f}"])
    folds = max(len(e.tuning["values"]) for e in tuned)
    figure = plots.budget_curves({e.name: e.tuning["budget"] for e in tuned}, r.folder.figure("tuning_budget"))
    return Section(
        "Equal tuning",
        [
            f"Every outer fold searched {len(trials)} trials of `--tune {r.settings.get('tune')}` ({how}), the same "
            "trials for every architecture and fold, each trained with the fold's seed. A trial fits the fold's fit "
            "part and is judged by its loss on the fold's inner validation split (its best epoch's, as early "
            "stopping watches); the fold keeps the trial with the lowest, whose model is the fold model. No trial "
            "sees the score fold, which the kept model predicts once: the ranking above is of tuned architectures.",
            Table(
                ["architecture", *[f"fold {i + 1}" for i in range(folds)], "trainings", "epochs", "minutes"],
                rows,
                caption="Each fold's chosen settings ('edge': the lowest or highest value tried, so the best may lie "
                "beyond the search) and the tuning's cost: trainings, epochs and minutes of fit over every trial.",
            ),  # fmt: skip
            Figure(
                figure,
                "Expected best inner-validation loss against the number of trials (Dodge et al. 2019's "
                "estimator over each fold's trials, averaged over the folds): where a curve is still falling at "
                "the full budget, more trials would likely help that architecture.",
            ),  # fmt: skip
        ],
    )


def in_words(values: dict) -> str:
    """A trial's settings as a cell: ``lr 0.003, augment light``."""
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())


def refits(r: RunResults) -> Section | None:
    """After 8, with ``benchmark refit``: each refitted architecture's model on all training images beside its
    fold ensemble on every held-out set, and which of the two each set favours."""
    if not r.refits:
        return None
    shown = HELDOUT_METRICS if r.info.binary else HELDOUT_MULTICLASS
    decision = "at 0.5" if r.info.binary else "argmax"
    parts, rows = [], []
    for name, refit in r.refits.items():
        counts = ", ".join(f"{c} {n}" for c, n in refit["counts"].items())
        best = ", ".join(map(str, refit["best_epochs"]))
        parts.append(
            f"{name}: trained once more on all {refit['n_images']} cross-validation images ({counts}) for "
            f"{refit['epochs']} epochs, the median of its folds' best epochs ({best}), "
            + (
                f"with the tuned values its folds chose most often ({in_words(refit['tuned'])}), "
                if refit.get("tuned")
                else ""
            )  # fmt: skip
            + "with the class weights and output bias of all of them and no early stopping (no image is left to "
            f"watch); {refit['fit_seconds']:.0f} s."
        )
        for where, (scores, on_set) in refit_sets(r, name).items():
            folds = [row for row in scores.get(name, {}).get("ensemble", []) if not row["tta"]]
            rows += [[name, where, "fold ensemble", *_heldout_row(name, row, shown)[1:]] for row in folds]
            rows += [[name, where, "refit", *_heldout_row(name, row, shown)[1:]] for row in on_set["heldout"]]
            if versus := on_set["against_folds"]:
                parts.append(against_folds_sentence(name, where, versus, decision))
    if rows:
        caption = "The fold ensemble and the refit on each held-out set, each metric with its 95 % bootstrap interval."
        parts.append(Table(["architecture", "held-out set", "model", "threshold" if r.info.binary else "decision",
                            *shown], rows, caption=caption))  # fmt: skip
    parts.append(REFIT_TEXT)
    return Section("Refit on all training images", parts)


def against_folds_sentence(name: str, where: str, versus: dict, decision: str) -> str:
    """The refit against its fold ensemble on one held-out set (``refit_against_folds``), in one sentence."""
    verdict = "cannot tell: the interval holds 0" if versus["better"] == "cannot tell" else (
        f"the {versus['better']} is better on these images")  # fmt: skip
    return (
        f"{name} on the {where}, {versus['metric']} ({decision}): refit {versus['refit']:.3f}, fold "
        f"ensemble {versus['folds']:.3f}, difference {versus['difference']:+.3f} (95 % paired bootstrap "
        f"interval {_signed_ci(versus['ci'])}, p {versus['p']:.3g}) — {verdict}."
    )


def refit_sets(r: RunResults, name: str) -> dict[str, tuple[dict, dict]]:
    """Each held-out set on which ``name``'s refit was scored: where → (every architecture's scores there, the
    refit's: ``{"heldout", "against_folds"}``)."""
    refit, found = r.refits[name], {}
    if r.heldout and refit.get("heldout"):
        found["test split"] = (r.heldout, refit)
    for site, scores in r.sites.items():
        if on_site := scores.get("refits", {}).get(name):
            found[f"site {site}"] = (scores["heldout"], on_site)
    return found


REFIT_TEXT = (
    "Which to ship: the fold ensemble is what cross-validation measured (its spread over folds is known); the refit "
    "has seen every training image but was never scored by cross-validation. The refit has no out-of-fold "
    "predictions of its own, so its thresholds are its fold models' out-of-fold ones; its figures at 0.5 and its "
    "ROC-AUC and PR-AUC do not depend on them. `benchmark predict` and `benchmark export` take either (--model "
    "folds or refit)."
)


def sites(r: RunResults) -> list[Section]:
    """After 8, with ``benchmark evaluate``: every held-out set side by side, then each site's tables."""
    if not r.sites:
        return []
    return [side_by_side(r), *(site_section(r, site) for site in r.sites.values())]


def side_by_side(r: RunResults) -> Section:
    """The ranking metric of each architecture's fold ensemble on every held-out set, and each set's verdict."""
    sets = held_out_sets(r)
    rows = []
    for e in r.ok:
        cells = []
        for scores, _ in sets.values():
            row, m = scores[e.name]["ensemble"][0] if e.name in scores else None, r.rank_by
            cells.append("-" if row is None else f"{row['metrics'][m]:.3f} [{interval(row['ci'][m])}]")
        rows.append([e.name, f"{e.metrics[r.rank_by].mean:.3f}", *cells])
    rows.append(["ranking transfer", "", *[t["verdict"] if t else "-" for _, t in sets.values()]])
    decision = "at 0.5" if r.info.binary else "argmax"
    return Section(
        "Held-out sets side by side",
        [
            Table(
                ["architecture (CV rank order)", f"CV {r.rank_by}", *sets],
                rows,
                caption=f"{r.rank_by} of each fold ensemble ({decision}) with its 95 % bootstrap interval on each "
                "held-out set, and whether the CV ranking transfers there (agree, disagree, unresolved, tied).",
            )
        ],
    )


def held_out_sets(r: RunResults) -> dict[str, tuple[dict, dict | None]]:
    """Every held-out set: name → (each architecture's scores there, the ranking transfer there)."""
    sets = {"test split": (r.heldout, r.transfer)} if r.heldout else {}
    return sets | {f"site {name}": (site["heldout"], site["transfer"]) for name, site in r.sites.items()}


def interval(ci) -> str:
    """An interval's two ends, as every table shows them (inside brackets)."""
    return f"{ci[0]:.3f}, {ci[1]:.3f}"


def site_section(r: RunResults, site: dict) -> Section:
    """One site scored by ``benchmark evaluate``: its data, the held-out tables and the ranking transfer."""
    name, data = site["name"], site["data"]
    counts = ", ".join(f"{c} {n}" for c, n in site["counts"].items())
    where = f"site {name}"
    intro = (
        f"{data['path']} ({data['split']}; {counts}; {len(site.get('skipped', {}))} unreadable file(s) skipped), "
        "scored after the run by `benchmark evaluate` with each architecture's saved fold models "
        f"({', '.join(f'{n}: {len(f)}' for n, f in site['models'].items())}); the thresholds are the ones chosen on "
        "the out-of-fold predictions, as for the test split. Nothing here fed back into training, thresholds or ranks."
    )
    runs_of = lambda n: site_predictions(r.folder, name, {n: site["models"][n]})[n]  # noqa: E731
    parts = _heldout_parts(r, site["heldout"], runs_of, where, f"site-{name}")
    if site["transfer"]:
        parts += _transfer_parts(r, site["transfer"], where)
    return Section(f"External validation: {name}", [intro, *parts])


def _paired_table(t: dict, where: str) -> Table:
    """Each architecture against the CV winner on the same held-out images (``transfer["paired"]``)."""
    test = dict(zip(t["architectures"], t["test"], strict=True))
    rows = [
        [
            c["architecture"],
            f"{test[c['architecture']]:.3f}",
            f"{c['difference']:+.3f}",
            _signed_ci(c["ci"]),
            f"{c['p']:.3g}",
            f"{c['p_holm']:.3g}",
            "yes" if c["beats_cv_winner"] else "no",
        ]
        for c in t["paired"]
    ]
    headers = ["architecture", f"{where} {t['metric']}", f"− {t['cv_winner']} (CV winner)", "95 % interval", "p"]
    return Table(
        [*headers, "Holm p", "beats the CV winner"],
        rows,
        caption=f"Each architecture against the CV winner {t['cv_winner']} on the same images: paired bootstrap "
        f"of the {t['metric']} difference over the {t['n_boot']} resamples of τ's interval, two-sided p, Holm's "
        f"adjustment over the {len(t['paired'])} comparisons; it beats the CV winner where the Holm-adjusted p is "
        f"below {t['alpha']} and the difference is in its favour.",
    )


def transfer_sentence(r: RunResults, t: dict, where: str = "test split") -> str:
    """The winner's held-out figures on ``where``, the verdict and the comparison that decides it, in one sentence."""
    winner = t["architectures"].index(t["cv_winner"])
    tau = f"Kendall's τ = {_corr(t['kendall_tau'])}, 95 % interval {_ci(t['kendall_tau_ci'])}"
    label = "test" if where == "test split" else where
    words = {
        "agree": f"the CV and {label} rankings agree ({tau}, above 0)",
        "unresolved": f"this {where} does not resolve whether the CV ranking holds ({tau}, which spans 0)",
        "disagree": f"the CV and {label} rankings DISAGREE ({tau}{', below 0' if t['kendall_tau_ci'][1] < 0 else ''})",
        "tied": f"the scores are tied on one side, so the {where} can neither confirm nor refute the CV order ({tau})",
    }[t["verdict"]]
    return (
        f"On the held-out {where} the CV winner {t['cv_winner']} scores {t['metric']} {t['test'][winner]:.3f} (CV "
        f"{t['cv'][winner]:.3f}; fold ensemble, {'at 0.5' if r.info.binary else 'argmax'}); {words}; "
        f"{_decisive(t, f'{label} images')}."
    )


def _decisive(t: dict, images: str = "test images") -> str:
    """The paired comparison that matters most: the architecture that beats the CV winner with the smallest
    Holm p, else the one that comes closest to it on the test split."""
    beaten = [c for c in t["paired"] if c["beats_cv_winner"]]
    sign = better(t["metric"])
    c = min(beaten, key=lambda c: c["p_holm"]) if beaten else max(t["paired"], key=lambda c: sign * c["difference"])
    figures = (
        f"{c['difference']:+.3f} {t['metric']} (95 % paired bootstrap interval {_signed_ci(c['ci'])}, Holm-adjusted "
        f"p = {c['p_holm']:.3g} over {len(t['paired'])} comparison{'s' if len(t['paired']) > 1 else ''})"
    )
    if beaten:
        return f"{c['architecture']} beats it on the same {images} by {figures}"
    closest = "leads it" if sign * c["difference"] > 0 else "comes closest to it"
    return (
        f"no architecture beats it significantly: the best of the others, {c['architecture']}, {closest} by " + figures
    )


def _signed_ci(interval: list[float]) -> str:
    return "undefined" if np.isnan(interval[0]) else f"[{interval[0]:+.3f}, {interval[1]:+.3f}]"


def _ci(interval: list[float]) -> str:
    return "undefined" if np.isnan(interval[0]) else f"[{interval[0]:.2f}, {interval[1]:.2f}]"


def _corr(value: float) -> str:
    return "undefined (tied scores)" if np.isnan(value) else f"{value:.2f}"


def gradcam(r: RunResults) -> Section:
    """9: the saved Grad-CAM panels (``<arch>/gradcam.npz``)."""
    section = Section("Grad-CAM", [GRADCAM_TEXT])
    for e in r.ok:
        panel = r.folder.read_gradcam(e.name)
        if panel is None:
            continue
        label = f"P({r.info.positive})" if r.info.binary else "P(predicted)"
        path = plots.gradcam_panel(panel, label, r.folder.figure(f"gradcam-{e.name}"))
        section.parts.append(Figure(path, f"{e.name}: Grad-CAM at layer {panel['layer']}."))
        shown = zip(panel["kinds"], panel["paths"], panel["probabilities"], strict=True)
        section.parts.append(
            Table(
                ["kind", "file", label],
                [[k, p, f"{q:.3f}"] for k, p, q in shown],
                caption=f"{e.name}: the images above, left to right and top to bottom.",
            )
        )
    if len(section.parts) == 1:
        section.parts.append("No Grad-CAM panels: no held-out test split, or `--gradcam-archs none`.")
    return section


GRADCAM_TEXT = (
    "Where the fold models look: the gradient of the predicted class's score with respect to the last "
    "convolutional feature map, averaged over space, weights its channels; the rectified weighted sum is "
    "drawn over the test image (red = most influence), averaged over the fold models. Images: the most "
    "confident true positives, true negatives, false positives and false negatives of the fold ensemble "
    "at 0.5. A model that looks outside the lungs (labels, borders) is learning a shortcut."
)


def reproduce(r: RunResults) -> Section:
    """10: the command, the files and the rules."""
    return Section(
        "Reproduce",
        [
            "Command (every argument quoted for a POSIX shell, so it can be pasted as it is):",
            Code(shlex.join(r.config.get("argv", ["benchmark", "run"]))),
            "Files: config.json (settings, versions, machine), splits.json (the folds), <arch>/fold-<i>/ "
            "(history.csv, predictions.csv, metrics.json, model.keras), folds.csv, oof.csv, results.json.",
            "Rules: metrics at threshold 0.5 on each scored fold; mean ± sample std (ddof 1) over folds; "
            "confidence intervals from the t-distribution with n − 1 degrees of freedom over the n folds, the "
            "variance of the mean taken as s²(1/n + n_test/n_train); Nadeau–Bengio corrected resampled t-test "
            "(Bouckaert–Frank over repeated folds) with n_test/n_train from the saved fold sizes, Holm's "
            "adjustment over all pairs; Friedman's test and the Nemenyi critical difference (Demšar 2006), "
            "descriptive; Kendall's τ and Spearman's ρ with a percentile bootstrap over test images; each "
            "architecture against the CV winner by a paired bootstrap of the ranking metric's difference on the "
            "same resamples of the test images, Holm's adjustment over those comparisons.",
        ],
    )
