"""Reporting: a model card of the chosen architecture (``benchmark card``, and ``model_card.md`` beside an export).

The sections follow Mitchell et al. 2019, "Model Cards for Model Reporting": model details, intended use,
the data, how the model was chosen, the held-out and external figures with the ranking-transfer verdicts,
known limits, the software. Every number is read from the run's results (:class:`RunResults`).
"""

from __future__ import annotations

from pathlib import Path

from benchmark.errors import counted
from benchmark.report.leaderboard import runner_up_verdict
from benchmark.report.render import Section, Table, to_markdown
from benchmark.report.sections import (
    GAP_FLAG,
    against_folds_sentence,
    decision_label,
    held_out_sets,
    in_words,
    interval,
    refit_sets,
    source,
    transfer_sentence,
    weights_used,
)
from benchmark.store.results import RunResults

CARD_METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc")
CARD_MULTICLASS = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")


def model_card(results: RunResults, arch: str, model: str = "folds") -> str:
    """The model card of ``arch`` (a finished architecture of ``results``) as markdown: of its fold ensemble, or
    (``model`` refit) of its refit on all training images."""
    a, info, config = results.arch(arch), results.info, results.config
    shown = CARD_METRICS if info.binary else CARD_MULTICLASS
    sets = held_out_sets(results)
    if model == "refit":
        refit = results.refits[arch]
        tuned = (
            f", with the tuned values its folds chose most often ({in_words(refit['tuned'])})"
            if refit.get("tuned")
            else ""
        )
        what = (
            f"The model is the refit: trained once on all {refit['n_images']} cross-validation images for "
            f"{counted(refit['epochs'], 'epoch')} (the median of its {info.n_folds} fold models' best epochs){tuned}, "
            f"without early stopping ({weights_used(config, arch)}); the cross-validation figures below are its fold "
            "models'."
        )
    else:
        what = (
            f"The model is the fold ensemble: the mean of the probabilities of {info.n_folds} fold models, each "
            f"trained on the cross-validation images outside its fold ({weights_used(config, arch)})."
        )
    sections = [
        Section(
            "Model details",
            [
                f"{arch} ({source(arch)}): {a.description} {a.params:,} parameters. {what} Classes: "
                f"{', '.join(info.class_names)}"
                + (f"; positive class {info.positive}." if info.binary else "; the most probable class is taken."),
                f"Run folder {results.folder.path.resolve()}; code commit {config.get('git_commit') or 'unknown'}; "
                f"ranked {a.rank} of {len(results.ok)} finished architectures by {info.rank_by}.",
            ],
        ),
        Section(
            "Intended use",
            [
                f"Research use and decision support on images like those of {info.data} ({info.image_size} px, "
                f"classes {', '.join(info.class_names)}): to compare with a reader's judgement, and as the candidate "
                "whose figures below a site checks on its own labelled images before any use there.",
                "Not for: diagnosis or triage without a clinician; patients, devices, sites or image types other "
                "than those of the training collection before `benchmark evaluate` on that site's labelled images "
                "shows it holds; any decision where the known limits below matter. It has no regulatory clearance.",
            ],
        ),
        Section(
            "Data",
            [
                f"Training (cross-validation) images: {_counts(info.counts)} from {info.data}; held-out test images: "
                f"{_counts(info.test_counts or {}) or 'none'}; unreadable files skipped: {len(info.skipped)}. "
                f"Folds: {info.splits}.",
            ],
        ),
        Section("How it was chosen", chosen_parts(results, arch)),
        Section("Held-out and external figures", figures_parts(results, arch, sets, shown)),
        Section("Known limits", limits_parts(results, arch, sets)),
        Section(
            "Software",
            [
                "Versions: "
                + ", ".join(f"{k} {v}" for k, v in config.get("packages", {}).items())
                + f"; Python {config.get('python', '?')}; backend {info.backend} on {', '.join(info.devices) or '?'}; "
                f"machine {config.get('machine', {}).get('platform', '?')}."
            ],
        ),
    ]
    return to_markdown(sections, f"Model card — {arch}", results.folder.path)


def chosen_parts(results: RunResults, arch: str) -> list:
    a, metric = results.arch(arch), results.rank_by
    s = a.metrics[metric]
    parts = [
        f"Stratified cross-validation ({results.info.splits}), the same folds for every candidate, early stopping "
        f"on an inner split; {metric} {s.mean:.3f} ± {s.std:.3f} over the folds, corrected 95 % interval "
        f"[{interval(s.ci)}]."
    ]
    if results.comparison:
        parts.append(runner_up_verdict(results.comparison))
    rows = [[e.rank, e.name, f"{e.metrics[metric].mean:.3f} [{interval(e.metrics[metric].ci)}]"] for e in results.ok]
    parts.append(Table(["rank", "architecture", f"CV {metric} [95 % interval]"], rows, caption="The candidates."))
    return parts


def figures_parts(results: RunResults, arch: str, sets: dict, shown) -> list:
    if not sets:
        return ["No held-out figures: the run had no test split and no site was evaluated (`benchmark evaluate`)."]
    rows = []
    for where, (scores, _) in sets.items():
        for row in scores.get(arch, {}).get("ensemble", []):
            rows.append([where, "fold ensemble", decision_label(row), *_cells(row, shown)])
    refits = refit_sets(results, arch) if arch in results.refits else {}
    for where, (_, refit) in refits.items():
        rows += [[where, "refit", decision_label(row), *_cells(row, shown)] for row in refit["heldout"]]
    parts: list = [Table(["held-out set", "model", "decision", *shown], rows, caption="Each held-out set, each "
                         "metric with its 95 % bootstrap interval over the images.")]  # fmt: skip
    parts += [transfer_sentence(results, t, where) for where, (_, t) in sets.items() if t]
    decision = "at 0.5" if results.info.binary else "argmax"
    parts += [against_folds_sentence(arch, where, refit["against_folds"], decision)
              for where, (_, refit) in refits.items() if refit["against_folds"]]  # fmt: skip
    return parts


def _cells(row: dict, shown) -> list[str]:
    return [f"{row['metrics'][k]:.3f} [{interval(row['ci'][k])}]" for k in shown]


def limits_parts(results: RunResults, arch: str, sets: dict) -> list:
    """The measured gaps between cross-validation and each held-out set, largest first."""
    a, parts = results.arch(arch), []
    for where, (scores, _) in sets.items():
        if arch not in scores:
            continue
        at_plain = scores[arch]["ensemble"][0]["metrics"]
        gaps = sorted(((at_plain[m] - a.metrics[m].mean, m) for m in a.metrics if m in at_plain and m != "log_loss"),
                      key=lambda g: -abs(g[0]))  # fmt: skip
        large = [
            f"{m} {a.metrics[m].mean:.3f} → {at_plain[m]:.3f} ({gap:+.3f})" for gap, m in gaps if abs(gap) >= GAP_FLAG
        ]
        parts.append(f"On the {where}: " + ("; ".join(large) if large else f"no metric moves by {GAP_FLAG} or more")
                     + " (cross-validation mean → fold ensemble at the plain decision).")  # fmt: skip
    verdicts = ", ".join(f"{where} {t['verdict']}" for where, (_, t) in sets.items() if t)
    if any(t and t["verdict"] != "agree" for _, t in sets.values()):
        parts.append(f"Whether the cross-validation ranking holds: {verdicts}. Where it is not 'agree', the CV "
                     "ranking alone does not justify preferring this model there.")  # fmt: skip
    parts.append("The figures hold for images like the held-out sets above; a shift in scanner, exposure, "
                 "population or prevalence can move them, as the gaps show. Thresholds were chosen on the "
                 "training collection.")  # fmt: skip
    return parts


def _counts(counts: dict) -> str:
    return ", ".join(f"{c} {n}" for c, n in counts.items())


def write_card(results: RunResults, arch: str, path: Path, model: str = "folds") -> None:
    from benchmark.store.files import write_text

    write_text(path, model_card(results, arch, model))
