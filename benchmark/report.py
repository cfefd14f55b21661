"""Stage 7 — report: ``report.md`` and a self-contained ``report.html`` built from a run folder alone.

Everything shown is read back from the saved files (results.json, folds.csv,
oof.csv, each fold's history.csv), so ``benchmark report RUN_DIR`` rebuilds the
report of a finished, resumed or partial run without training anything.

A report is a list of :class:`Section` (paragraphs, tables, figures); one
renderer writes it as markdown, another as HTML, so both say the same.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from tabulate import tabulate

from benchmark.diagnostics import EARLY_BEST, FOLD_STD, OSCILLATION, OVERFIT_GAP, flags
from benchmark.files import read_json, write_text
from benchmark.heldout import fold_ensemble, read_gradcam, read_heldout
from benchmark.metrics import LOWER_IS_BETTER, binary_metrics, confusion, oof_thresholds
from benchmark.output import (
    CURVE_HEADERS,
    RunFolder,
    curve_row,
    friedman_sentence,
    ranked_metrics,
    runner_up_verdict,
    safe_name,
)

FIGURES = "report_files"


@dataclass
class Table:
    headers: list[str]
    rows: list[list]
    caption: str = ""


@dataclass
class Figure:
    path: Path  # a PNG inside the run folder
    caption: str


@dataclass
class Section:
    title: str
    parts: list = field(default_factory=list)  # str (a paragraph), Table or Figure


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and the t-distribution confidence interval over folds.

    >>> [round(v, 4) for v in mean_ci([0.9, 0.92, 0.94])]
    [0.92, 0.8703, 0.9697]
    """
    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    if len(arr) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + confidence / 2, len(arr) - 1) * arr.std(ddof=1) / np.sqrt(len(arr)))
    return mean, mean - half, mean + half


def _load(run_dir: Path) -> dict:
    results = read_json(run_dir / "results.json")
    if results is None:
        from benchmark import UsageError

        raise UsageError(
            f"{run_dir}: no readable results.json. Give a run folder written by `benchmark run` "
            "(rerun the same command with --out to finish a partial run)."
        )
    return {
        "results": results,
        "config": read_json(run_dir / "config.json") or {},
        "folds": pd.read_csv(run_dir / "folds.csv") if (run_dir / "folds.csv").exists() else pd.DataFrame(),
        "oof": pd.read_csv(run_dir / "oof.csv") if (run_dir / "oof.csv").exists() else pd.DataFrame(),
    }


def build_sections(run_dir: Path) -> list[Section]:
    """Every section of the report, with its figures written under ``RUN/report_files/``."""
    from benchmark import plots

    run_dir = Path(run_dir)
    data = _load(run_dir)
    results, config = data["results"], data["config"]
    run = results["run"]
    rank_by = run["rank_by"]
    entries = results["architectures"]
    ok = [e for e in entries if e["status"] == "ok"]
    figures = run_dir / FIGURES
    figures.mkdir(exist_ok=True)
    sections = [_summary(run, config, ok, results.get("comparison"))]

    board = Section(
        "2. Leaderboard",
        [
            f"Ranked by {rank_by} ({'lower' if rank_by in LOWER_IS_BETTER else 'higher'} is better; ties go to the "
            "lower std). Each cell: mean ± sample std over folds [95 % confidence interval, t-distribution]."
        ],
    )
    shown = ranked_metrics(rank_by)
    groups = [
        ("At threshold 0.5", [m for m in shown if m not in THRESHOLD_FREE]),
        ("Threshold-free", [m for m in shown if m in THRESHOLD_FREE]),
    ]
    for caption, metrics in sorted(groups, key=lambda g: rank_by not in g[1]):  # the ranking metric's group first
        board.parts.append(
            Table(["rank", "architecture", *metrics], [_board_row(e, metrics) for e in entries], caption)
        )
    board.parts.append(
        Table(
            ["rank", "architecture", "params", "mean epochs", "fit s/fold"],
            [
                [
                    e["rank"] or "-",
                    e["name"],
                    f"{e['params']:,}",
                    f"{np.mean(e['curves']['epochs']):.1f}",
                    f"{np.mean(e['fit_seconds']):.0f}",
                ]
                for e in entries
                if "metrics" in e
            ],
            "Cost.",
        )
    )
    board.parts += [f"Failed: {e['name']}: {e['error']}" for e in entries if e["status"] != "ok"]
    board.parts.append(
        Table(
            ["architecture", "tags", "description"],
            [[e["name"], ", ".join(e["tags"]), e["description"]] for e in entries],
        )
    )
    sections.append(board)

    folds = data["folds"]
    detail = Section("3. Per-fold detail", [f"{rank_by} of each architecture on each scored fold."])
    if not folds.empty:
        wide = folds.pivot(index="arch", columns="fold", values=rank_by)
        wide = wide.reindex([e["name"] for e in entries if e["name"] in wide.index])  # rank order
        detail.parts.append(
            Table(
                ["architecture", *[f"fold {c + 1}" for c in wide.columns]],
                [[a, *[f"{v:.3f}" for v in wide.loc[a]]] for a in wide.index],
            )
        )
        detail.parts.append(
            Figure(
                plots.fold_boxplots(folds, [e["name"] for e in ok], figures / "folds.png"),
                "Fold-wise metrics: box plot per architecture, one dot per fold.",
            )
        )
    sections.append(detail)
    sections.append(_statistics(results.get("comparison"), figures))

    histories = {e["name"]: _histories(run_dir, e) for e in ok}
    curves = Section(
        "5. Loss curves and diagnostics",
        [
            "Training (dashed) and validation (solid) loss of every fold, thin; the across-fold mean of the "
            "validation loss bold; a dot marks each fold's best epoch.",
            Figure(plots.loss_curves(histories, figures / "loss_curves.png"), "Loss curves per architecture."),
            Figure(
                plots.curve_bars(ok, OSCILLATION, figures / "curve_bars.png"),
                "Across-fold variance of the validation loss (mean over the epochs every fold ran) and the "
                "oscillation index (share of epochs where the validation loss turns around).",
            ),
            Table(CURVE_HEADERS, [curve_row(e) for e in ok]),
        ],
    )
    settings = config.get("settings", {})
    for e in ok:
        found = flags(e, rank_by, settings.get("epochs", 0), settings.get("patience", 0))
        curves.parts.append(f"{e['name']}: " + ("; ".join(found) if found else "no flags") + ".")
    curves.parts.append(
        f"Flag rules: oscillation index above {OSCILLATION}; validation − training loss above {OVERFIT_GAP} "
        f"at the best epoch; best epoch = last epoch = --epochs; best epoch 1 in at least {EARLY_BEST:.0%} of "
        f"folds; std of {rank_by} over folds above {FOLD_STD}; a fold that waited the full patience."
    )
    sections.append(curves)

    oof = data["oof"]
    if not oof.empty:
        sections.append(_out_of_fold(oof, [e["name"] for e in ok], figures))
    sections.append(_heldout(run_dir, ok, oof, run["folds"], figures))
    sections.append(_gradcam(run_dir, ok, run["classes"]["positive"], figures))
    sections.append(
        Section(
            "9. Reproduce",
            [
                "Command: " + " ".join(config.get("argv", ["benchmark", "run"])),
                "Files: config.json (settings, versions, machine), splits.json (the folds), <arch>/fold-<i>/ "
                "(history.csv, predictions.csv, metrics.json, model.keras), folds.csv, oof.csv, results.json.",
                "Rules: metrics at threshold 0.5 on each scored fold; mean ± sample std (ddof 1) over folds; "
                "confidence intervals from the t-distribution with k − 1 degrees of freedom; Nadeau–Bengio "
                "corrected resampled t-test with n_test/n_train from the saved fold sizes; Friedman's test and "
                "the Nemenyi critical difference (Demšar 2006).",
            ],
        )
    )
    return sections


THRESHOLD_FREE = ("roc_auc", "pr_auc", "log_loss")
RANGES = {"mcc": (-1.0, 1.0), "log_loss": (0.0, float("inf"))}  # the others lie in [0, 1]


def _board_row(entry: dict, metrics: list[str]) -> list:
    name = entry["name"] + ("" if entry["status"] == "ok" else " (failed)")
    if "metrics" not in entry:
        return [entry["rank"] or "-", name, *["-"] * len(metrics)]
    cells = []
    for m in metrics:
        mean, lo, hi = mean_ci(entry["metrics"][m]["folds"])
        low_bound, high_bound = RANGES.get(m, (0.0, 1.0))  # a t-interval can overshoot a metric's range
        lo, hi = max(lo, low_bound), min(hi, high_bound)
        cells.append(f"{mean:.3f} ± {entry['metrics'][m]['std']:.3f} [{lo:.3f}, {hi:.3f}]")
    return [entry["rank"] or "-", name, *cells]


def _summary(run: dict, config: dict, ok: list[dict], comparison: dict | None) -> Section:
    parts = []
    if ok:
        best = ok[0]
        m = best["metrics"][run["rank_by"]]
        parts.append(f"Winner on {run['rank_by']}: {best['name']} ({m['mean']:.3f} ± {m['std']:.3f}).")
    if comparison:
        parts.append(runner_up_verdict(comparison))
    counts = ", ".join(f"{c} {n}" for c, n in run.get("counts", {}).items())
    test = ", ".join(f"{c} {n}" for c, n in (run.get("test_counts") or {}).items()) or "none"
    settings = config.get("settings", {})
    parts.append(
        f"Data: {run['data']} — cross-validation images: {counts}; held-out test images: {test}; "
        f"skipped unreadable files: {len(run.get('skipped', {}))}."
    )
    parts.append(
        "Settings: "
        + ", ".join(
            f"{k} {settings[k]}"
            for k in (
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
            if k in settings
        )
        + f"; backend {run.get('backend')} on {', '.join(run.get('devices', []))}; training time (sum of "
        f"fit over all folds) {sum(sum(e['fit_seconds']) for e in ok) / 60:.1f} min; wall time of the last "
        f"invocation {run.get('wall_seconds', 0) / 60:.1f} min."
    )
    packages = config.get("packages", {})
    parts.append(
        "Versions: "
        + ", ".join(f"{k} {v}" for k, v in packages.items())
        + f"; machine: {config.get('machine', {}).get('platform', '?')}."
    )
    return Section("1. Summary", parts)


def _statistics(comparison: dict | None, figures: Path) -> Section:
    from benchmark import plots

    section = Section("4. Statistical comparison")
    if not comparison:
        section.parts.append("Fewer than two architectures completed: nothing to compare.")
        return section
    section.parts.append(
        "How to read this: a p-value below 0.05 says the difference on "
        f"{comparison['metric']} is unlikely to be fold-to-fold noise; the corrected t-test accounts for the "
        "overlap of training sets between folds, which a plain t-test ignores. With k folds there are only k "
        "paired values, so a large p-value is weak evidence of equality, not proof."
    )
    best = comparison["best"]
    section.parts.append(
        Table(
            [f"{best} vs", "mean difference", "95 % interval", "t", "p"],
            [
                [
                    name,
                    f"{r['mean_difference']:+.4f}",
                    f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]",
                    f"{r['t']:.2f}",
                    f"{r['p']:.3g}",
                ]
                for name, r in comparison["best_vs"].items()
            ],
            caption="The best against each other architecture (Nadeau–Bengio corrected resampled t-test).",
        )
    )
    names = list(comparison["p_values"])
    section.parts.append(
        Table(
            ["p-value", *names],
            [[a, *["-" if a == b else f"{comparison['p_values'][a][b]:.3g}" for b in names]] for a in names],
            caption="Corrected t-test p-value of every pair.",
        )
    )
    friedman = friedman_sentence(comparison)
    if friedman:
        section.parts.append(friedman)
        f = comparison["friedman"]
        section.parts.append(
            Figure(
                plots.critical_difference(f["average_ranks"], f["critical_difference"], figures / "cd.png"),
                "Critical-difference diagram: average rank over folds (1 = best); a bar joins architectures "
                "whose average ranks differ by less than the Nemenyi critical difference (not significantly "
                "different at 0.05).",
            )
        )
    else:
        section.parts.append("Friedman's test and the critical-difference diagram need three or more architectures.")
    bayesian = comparison.get("bayesian")
    if bayesian:
        rope = next(iter(bayesian.values()))["rope"]
        section.parts.append(
            Table(
                [f"{best} vs", f"P({best} better)", "P(practically equal)", "P(other better)"],
                [[n, f"{b['better']:.3f}", f"{b['equivalent']:.3f}", f"{b['worse']:.3f}"] for n, b in bayesian.items()],
                caption=f"Bayesian correlated t-test (Corani & Benavoli 2015, baycomp) on {comparison['metric']}, "
                f"rope ±{rope}: differences smaller than {rope} count as practically equal. Read the probabilities "
                "directly: above 0.95 is a confident statement, anything else says the folds cannot decide.",
            )
        )
    elif "bayesian" in comparison:
        section.parts.append("Install baycomp (`pip install baycomp`) for the Bayesian correlated t-test.")
    return section


def _out_of_fold(oof: pd.DataFrame, names: list[str], figures: Path) -> Section:
    """Section 6: curves, confusion matrices and calibration of the out-of-fold probabilities."""
    from benchmark import plots

    rows = []
    for name in names:
        part = oof[oof.arch == name]
        for rule, t in oof_thresholds(part.label, part.probability).items():
            c = confusion(part.label, part.probability, t)
            rows.append([name, f"{t:.3f} ({rule})", c["tn"], c["fp"], c["fn"], c["tp"]])
    return Section(
        "6. Out-of-fold curves",
        [
            "Every training image scored once, by the fold model that did not see it (oof.csv).",
            Figure(plots.roc_pr(oof, names, figures / "roc_pr.png"), "ROC and precision-recall curves."),
            Table(
                ["architecture", "threshold", "TN", "FP", "FN", "TP"],
                rows,
                caption="Confusion matrices of the out-of-fold predictions at 0.5 and at the thresholds with the "
                "highest out-of-fold F1 and the highest sensitivity + specificity (Youden's J), the rules applied "
                "to the held-out split.",
            ),
            Figure(
                plots.reliability(oof, names, figures / "reliability.png"),
                "Reliability: mean predicted probability against the observed PNEUMONIA rate, 10 equal-width bins.",
            ),
        ],
    )


HELDOUT_METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "pr_auc")
GAP_FLAG = 0.05  # a CV-vs-test difference this large is worth a look


HELDOUT_TITLE = "7. Held-out test (not used for ranking)"


def _heldout(run_dir: Path, ok: list[dict], oof: pd.DataFrame, n_folds: int, figures: Path) -> Section:
    """Section 7: the fold ensemble and each fold model on the test split, at 0.5 and at the OOF threshold."""
    from benchmark import plots

    rows, fold_rows, gap_rows, curves = [], [], [], []
    for e in ok:
        runs = read_heldout(RunFolder(run_dir), e["name"], n_folds)
        if runs is None:
            continue
        labels = runs[0].label.to_numpy()
        ensemble = fold_ensemble(runs)
        arch_oof = oof[oof.arch == e["name"]]
        thresholds = oof_thresholds(arch_oof.label, arch_oof.probability)
        # --tta adds the same rows for each model's mean over shifted views
        for column, suffix in (("probability", ""), ("probability_tta", " + TTA")):
            if column in runs[0]:
                probabilities = fold_ensemble(runs, column)
                for rule, t in thresholds.items():
                    m = binary_metrics(labels, probabilities, t)
                    label = f"{t:.3f}" if rule == "0.5" else f"{t:.3f} ({rule})"
                    rows.append([e["name"], label + suffix, *[f"{m[k]:.3f}" for k in HELDOUT_METRICS]])
        singles = [binary_metrics(labels, r.probability.to_numpy()) for r in runs]
        fold_rows.append([e["name"], *[f"{s['roc_auc']:.3f} / {s['accuracy']:.3f}" for s in singles]])
        at_half = binary_metrics(labels, ensemble)
        for k in HELDOUT_METRICS:
            cv = e["metrics"][k]["mean"]
            gap = at_half[k] - cv
            flag = "large" if abs(gap) >= GAP_FLAG else ""
            gap_rows.append([e["name"], k, f"{cv:.3f}", f"{at_half[k]:.3f}", f"{gap:+.3f}", flag])
        curves.append(pd.DataFrame({"arch": e["name"], "label": labels, "probability": ensemble}))
    if not rows:
        return Section(
            HELDOUT_TITLE, ["No held-out predictions: the data has no test/ split, or models were not saved."]
        )
    test_curves = pd.concat(curves)
    return Section(
        HELDOUT_TITLE,
        [
            "The official test split, scored once after cross-validation by each architecture's fold models; "
            "nothing here fed back into training, thresholds or ranks. Fold ensemble = the mean of the fold "
            "models' probabilities. Each architecture's first row is at 0.5; the next two at thresholds chosen on "
            "its out-of-fold predictions before looking at the test split: the highest F1, and the highest "
            "sensitivity + specificity (Youden's J, which does not depend on the share of PNEUMONIA). Rows "
            "marked TTA (with --tta) average each model over the image and four copies shifted by 4 % up, down, "
            "left and right.",
            Table(["architecture", "threshold", *HELDOUT_METRICS], rows, caption="Fold ensemble on the test split."),
            Table(
                ["architecture", *[f"fold {i + 1}" for i in range(n_folds)]],
                fold_rows,
                caption="Each fold model alone at 0.5: ROC-AUC / accuracy.",
            ),
            Table(
                [
                    "architecture",
                    "metric",
                    "CV mean",
                    "test (ensemble, 0.5)",
                    "gap",
                    f"flag (gap ≥ {GAP_FLAG} either way)",
                ],
                gap_rows,
                caption="Cross-validation against the test split. Kaggle's test split was collected differently "
                "from its training split, so large gaps are expected; they say how far CV figures transfer.",
            ),
            Figure(
                plots.roc_pr(test_curves, list(test_curves.arch.unique()), figures / "test_roc_pr.png"),
                "ROC and precision-recall curves of the fold ensembles on the test split.",
            ),
        ],
    )


def _gradcam(run_dir: Path, ok: list[dict], positive: str, figures: Path) -> Section:
    """Section 8: the saved Grad-CAM panels (``<arch>/gradcam.npz``)."""
    from benchmark import plots

    section = Section(
        "8. Grad-CAM",
        [
            "Where the fold models look: the gradient of the predicted class's score with respect to the last "
            "convolutional feature map, averaged over space, weights its channels; the rectified weighted sum is "
            "drawn over the test image (red = most influence), averaged over the fold models. Images: the most "
            "confident true positives, true negatives, false positives and false negatives of the fold ensemble "
            "at 0.5. A model that looks outside the lungs (labels, borders) is learning a shortcut.",
        ],
    )
    for e in ok:
        panel = read_gradcam(RunFolder(run_dir), e["name"])
        if panel is None:
            continue
        path = figures / f"gradcam-{safe_name(e['name'])}.png"
        section.parts.append(
            Figure(plots.gradcam_panel(panel, positive, path), f"{e['name']}: Grad-CAM at layer {panel['layer']}.")
        )
        section.parts.append(
            Table(
                ["kind", "file", f"P({positive})"],
                [
                    [k, p, f"{q:.3f}"]
                    for k, p, q in zip(panel["kinds"], panel["paths"], panel["probabilities"], strict=True)
                ],
                caption=f"{e['name']}: the images above, left to right and top to bottom.",
            )
        )
    if len(section.parts) == 1:
        section.parts.append("No Grad-CAM panels: no held-out test split, or `--gradcam-archs none`.")
    return section


def _histories(run_dir: Path, entry: dict) -> list[pd.DataFrame]:
    return [
        pd.read_csv(run_dir / safe_name(entry["name"]) / f"fold-{i}" / "history.csv")
        for i in range(entry["folds_done"])
    ]


def _md(value, cell: bool = False) -> str:
    """Text safe in markdown: HTML-escaped (a forge renders raw HTML), ``|`` escaped inside tables."""
    text = html.escape(str(value), quote=False)
    return text.replace("|", "\\|") if cell else text


def to_markdown(sections: list[Section], title: str, base: Path) -> str:
    out = [f"# {_md(title)}"]
    for s in sections:
        out.append(f"## {_md(s.title)}")
        for part in s.parts:
            if isinstance(part, Table):
                rows = [[_md(c, cell=True) for c in row] for row in part.rows]
                headers = [_md(h, cell=True) for h in part.headers]
                out.append(
                    (f"{_md(part.caption)}\n\n" if part.caption else "")
                    + tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True)
                )
            elif isinstance(part, Figure):
                out.append(f"![{_md(part.caption)}]({part.path.relative_to(base).as_posix()})")
            else:
                out.append(_md(part))
    return "\n\n".join(out) + "\n"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:1em 0;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:.3em .5em;text-align:left;white-space:nowrap}
th{background:#f3f3f3}td.num{text-align:right}
caption{caption-side:top;text-align:left;font-style:italic;padding:.3em 0}
nav ul{columns:3;font-size:.9em;padding-left:1.2em}
img{max-width:100%;height:auto}figure{margin:1em 0}figcaption{font-style:italic;font-size:.9em}
@media print{body{max-width:none}h2{page-break-after:avoid}img{page-break-inside:avoid}}
"""


def _cell(value) -> str:
    text = str(value)
    numeric = bool(text) and (text[0].isdigit() or text[0] in "+-") and text != "-"
    if not numeric:
        return f"<td>{html.escape(text)}</td>"
    value, _, interval = text.partition(" [")  # a confidence interval goes on a second, smaller line
    second = f"<br><small>[{html.escape(interval)}</small>" if interval else ""
    return f"<td class='num'>{html.escape(value)}{second}</td>"


def to_html(sections: list[Section], title: str) -> str:
    """One self-contained page: inline CSS, images as base64 PNG, every string escaped."""
    esc = html.escape
    out = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>"
    ]
    out.append(
        "<nav><ul>"
        + "".join(f"<li><a href='#section-{i}'>{esc(s.title)}</a></li>" for i, s in enumerate(sections, 1))
        + "</ul></nav>"
    )
    for i, s in enumerate(sections, 1):
        out.append(f"<section id='section-{i}'><h2>{esc(s.title)}</h2>")
        for part in s.parts:
            if isinstance(part, Table):
                head = "".join(f"<th>{esc(str(h))}</th>" for h in part.headers)
                body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in part.rows)
                caption = f"<caption>{esc(part.caption)}</caption>" if part.caption else ""
                out.append(f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif isinstance(part, Figure):
                data = base64.b64encode(part.path.read_bytes()).decode("ascii")
                out.append(
                    f"<figure><img alt='{esc(part.caption, quote=True)}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{esc(part.caption)}</figcaption></figure>"
                )
            else:
                out.append(f"<p>{esc(str(part))}</p>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``run_dir``; return their paths."""
    run_dir = Path(run_dir)
    sections = build_sections(run_dir)
    title = f"CNN benchmark report — {run_dir.name}"
    md, page = run_dir / "report.md", run_dir / "report.html"
    write_text(md, to_markdown(sections, title, run_dir))
    write_text(page, to_html(sections, title))
    return md, page
