"""Reporting: the figures of the report, drawn with matplotlib/seaborn and saved as PNG (no screen needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: works on a headless machine
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from benchmark.evaluation.metrics import ALL_METRICS  # noqa: E402
from benchmark.store.results import ArchResult  # noqa: E402
from benchmark.store.runfolder import probabilities_of  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _legend_beside(ax, handles=None) -> None:
    """The legend right of ``ax``, off the data, in :func:`_columns` columns of at most 20 entries (each
    needs about 1.8 inches of figure width)."""
    handles = handles or ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0,
              ncol=_columns(handles), frameon=False)  # fmt: skip


def _legend_above(ax, handles) -> None:
    """A short legend above ``ax``, in one row: the rows of a forest plot leave no free corner."""
    ax.legend(handles=handles, fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.01), borderaxespad=0,
              ncol=min(len(handles), 4), frameon=False)  # fmt: skip


def _rows_inside(ax, n: int) -> None:
    """Rows 0 … n − 1 of a horizontal chart half a row from the frame, markers clear of the sides."""
    ax.set_ylim(-0.6, n - 0.4)
    ax.margins(x=0.06)


def _columns(names) -> int:
    """How many columns :func:`_legend_beside` gives ``names``' legend."""
    return 1 + (len(names) - 1) // 20


def _panels(n: int, width: float, height: float, cols: int = 3):
    """A figure with ``n`` panels, at most ``cols`` a row; unused grid cells are hidden."""
    cols = min(cols, max(1, n))
    rows = max(1, int(np.ceil(n / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat)[:n]


def fold_boxplots(folds: pd.DataFrame, order: list[str], path: Path) -> Path:
    """One panel per metric: a box per architecture and a dot per fold."""
    metrics = [m for m in ALL_METRICS if m in folds]  # the task's metrics
    long = folds[folds.arch.isin(order)].melt(id_vars=["arch", "fold"], value_vars=metrics, var_name="metric")
    fig, axes = _panels(len(metrics), 4.4, max(3.2, 0.6 + 0.22 * len(order)))  # a name's height per row
    for ax, metric in zip(axes, metrics, strict=True):
        part = long[long.metric == metric]
        sns.boxplot(data=part, x="value", y="arch", order=order, ax=ax, color="#dde6f0", fliersize=0)
        sns.stripplot(data=part, x="value", y="arch", order=order, ax=ax, color="#1f4e79", size=4)
        ax.set_title(metric)
        ax.set_xlabel("")
        ax.set_ylabel("")
    return _save(fig, path)


def loss_curves(histories: dict[str, list[pd.DataFrame]], path: Path) -> Path:
    """Per architecture: every fold's training and validation loss, the mean validation loss, best epochs."""
    fig, axes = _panels(len(histories), 4.4, 3.2)
    for ax, name in zip(axes, histories, strict=True):
        runs = histories[name]
        for i, h in enumerate(runs):
            color = plt.cm.tab10(i % 10)
            ax.plot(h.epoch, h.loss, "--", lw=0.8, color=color, alpha=0.7)
            ax.plot(h.epoch, h.val_loss, "-", lw=0.9, color=color, alpha=0.8)
            best = int(h.val_loss.idxmin())
            ax.plot(h.epoch[best], h.val_loss[best], "o", color=color, ms=4)
        common = min(len(h) for h in runs)
        stacked = np.stack([h.val_loss.to_numpy()[:common] for h in runs])
        epochs = np.arange(1, common + 1)
        mean, std = stacked.mean(axis=0), stacked.std(axis=0)
        ax.plot(epochs, mean, color="black", lw=2.2, label="mean val loss")
        ax.fill_between(epochs, mean - std, mean + std, color="black", alpha=0.12)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # epochs are whole
    return _save(fig, path)


def roc_pr(oof: pd.DataFrame, order: list[str], path: Path) -> Path:
    """ROC and precision-recall curves of every architecture's out-of-fold probabilities."""
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(10 + 1.8 * _columns(order), 4.5))
    for name in order:
        part = oof[oof.arch == name]
        fpr, tpr, _ = roc_curve(part.label, part.probability)
        precision, recall, _ = precision_recall_curve(part.label, part.probability)
        roc_ax.plot(fpr, tpr, lw=1.2, label=name)
        pr_ax.plot(recall, precision, lw=1.2, label=name)
    roc_ax.plot([0, 1], [0, 1], ":", color="grey")
    roc_ax.set(xlabel="false positive rate (1 − specificity)", ylabel="true positive rate (recall)", title="ROC")
    pr_ax.set(xlabel="recall", ylabel="precision", title="Precision–recall")
    _legend_beside(pr_ax)
    return _save(fig, path)


def roc_pr_by_class(frame: pd.DataFrame, order: list[str], classes: list[str], path: Path) -> Path:
    """One-vs-rest ROC and precision-recall curves of K-class probabilities: a pair of panels per class."""
    fig, axes = plt.subplots(len(classes), 2, figsize=(10 + 1.8 * _columns(order), 3.6 * len(classes)), squeeze=False)
    for c, (roc_ax, pr_ax) in enumerate(axes):
        for name in order:
            part = frame[frame.arch == name]
            truth, score = part.label == c, part[f"probability_{c}"]
            fpr, tpr, _ = roc_curve(truth, score)
            precision, recall, _ = precision_recall_curve(truth, score)
            roc_ax.plot(fpr, tpr, lw=1.2, label=name)
            pr_ax.plot(recall, precision, lw=1.2, label=name)
        roc_ax.plot([0, 1], [0, 1], ":", color="grey")
        roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC: {classes[c]} vs the rest")
        pr_ax.set(xlabel="recall", ylabel="precision", title=f"Precision–recall: {classes[c]}")
    _legend_beside(axes[0][1])
    return _save(fig, path)


def budget_curves(curves: dict[str, list[float]], path: Path) -> Path:
    """The expected best inner-validation loss against the number of trials, one line per architecture."""
    fig, ax = plt.subplots(figsize=(5.5 + 1.8 * _columns(curves), 4.0))
    for name, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), curve, "o-", ms=3, lw=1.1, label=name)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set(xlabel="trials", ylabel="expected best inner-validation loss", title="Tuning budget")
    _legend_beside(ax)
    return _save(fig, path)


def reliability(oof: pd.DataFrame, order: list[str], path: Path) -> Path:
    """Calibration of the out-of-fold probabilities: observed positive rate per predicted-probability bin;
    with more than two classes, of the top label (its probability against how often it is right)."""
    fig, ax = plt.subplots(figsize=(5.5 + 1.8 * _columns(order), 4.5))
    binary = "probability" in oof
    for name in order:
        part = oof[oof.arch == name]
        if binary:
            truth, score = part.label, part.probability
        else:
            p = probabilities_of(part)
            truth, score = p.argmax(axis=1) == part.label.to_numpy(), p.max(axis=1)
        observed, predicted = calibration_curve(truth, score, n_bins=10, strategy="uniform")
        ax.plot(predicted, observed, "o-", ms=3, lw=1.1, label=name)
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ylabel = "observed positive rate" if binary else "share right"
    ax.set(xlabel="mean predicted probability", ylabel=ylabel, title="Reliability")
    _legend_beside(ax)
    return _save(fig, path)


def forest(rows: list[tuple[str, float, float, float, float | None]], metric: str, path: Path) -> Path:
    """The ranking metric per architecture, best on top: the CV mean with its 95 % interval, and the
    held-out figure beside it where there is one. ``rows``: (name, mean, low, high, held-out or None)."""
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.42 * len(rows)))
    y = np.arange(len(rows))[::-1]
    for yi, (_, mean, low, high, test) in zip(y, rows, strict=True):
        ax.errorbar(mean, yi, xerr=[[mean - low], [high - mean]], fmt="o", color="#1f4e79", capsize=3, ms=6)
        if test is not None:
            ax.plot(test, yi, "D", color="#c55a11", ms=6)
    ax.set_yticks(y, [r[0] for r in rows])
    ax.set_xlabel(metric)
    handles = [plt.Line2D([], [], marker="o", color="#1f4e79", ls="", label="cross-validation mean, 95 % interval")]
    if any(r[4] is not None for r in rows):
        handles.append(plt.Line2D([], [], marker="D", color="#c55a11", ls="", label="held-out test split"))
    _legend_above(ax, handles)
    _rows_inside(ax, len(rows))
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def forest_runs(rows: list[tuple], metric: str, path: Path) -> Path:
    """:func:`forest` for several runs: ``rows`` of (architecture, run, mean, low, high, held-out or None),
    one colour per run, the runs of an architecture side by side."""
    names = list(dict.fromkeys(r[0] for r in rows))
    runs = list(dict.fromkeys(r[1] for r in rows))
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.42 * len(rows)))
    for row in rows:
        name, run, mean, low, high, test = row
        y = (len(names) - 1 - names.index(name)) * (len(runs) + 1) + (len(runs) - 1 - runs.index(run))
        color = plt.cm.tab10(runs.index(run) % 10)
        ax.errorbar(mean, y, xerr=[[mean - low], [high - mean]], fmt="o", color=color, capsize=3, ms=5)
        if test is not None:
            ax.plot(test, y, "D", color=color, ms=5, markeredgecolor="black")
    ticks = [(len(names) - 1 - i) * (len(runs) + 1) + (len(runs) - 1) / 2 for i in range(len(names))]
    ax.set_yticks(ticks, names)
    ax.set_xlabel(metric)
    _legend_above(ax, [plt.Line2D([], [], marker="o", color=plt.cm.tab10(i % 10), ls="", label=f"run {r}")
                       for i, r in enumerate(runs)])  # fmt: skip
    _rows_inside(ax, len(names) * (len(runs) + 1) - 1)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def curve_bars(entries: list[ArchResult], oscillation_flag: float, path: Path) -> Path:
    """Per architecture: the across-fold validation-loss variance and the mean oscillation index."""
    names, rows = [e.name for e in entries], np.arange(len(entries))
    fig, (var_ax, osc_ax) = plt.subplots(1, 2, figsize=(11, 1.0 + 0.4 * len(names)), sharey=True)
    variance = [e.curves["val_loss_variance"] for e in entries]
    oscillation = [e.curves["oscillation"]["mean"] for e in entries]
    for ax, values, color, top in (
        (var_ax, variance, "#1f4e79", max(variance) or 1.0),
        (osc_ax, oscillation, "#c55a11", 1.0),
    ):
        ax.barh(rows, values, color=color, height=0.6)
        ax.plot(values, rows, "o", color=color, ms=4)  # a value of 0 shows as a dot, not as nothing
        ax.set_xlim(-0.04 * top, 1.04 * top)
    var_ax.set_yticks(rows, names)
    var_ax.set(xlabel="across-fold variance of the validation loss", title="Fold-to-fold spread")
    osc_ax.axvline(oscillation_flag, ls=":", color="grey")
    osc_ax.set(xlabel=f"oscillation index (flag above {oscillation_flag})", title="Oscillation")
    var_ax.set_ylim(len(names) - 0.4, -0.6)  # rank order, best on top
    return _save(fig, path)


def critical_difference(average_ranks: dict[str, float], cd: float, path: Path) -> Path:
    """Demšar's critical-difference diagram: average ranks on an axis (1 = best, left); a bar joins
    architectures whose average ranks differ by less than the Nemenyi critical difference."""
    names = sorted(average_ranks, key=average_ranks.get)
    k = len(names)
    fig, ax = plt.subplots(figsize=(9, 1.4 + 0.2 * k))
    ax.set_xlim(0.3 - 1.6, k + 0.7 + 1.6)
    ax.set_ylim(0.5 + 0.28 * (k + 1) // 2 + 0.1, -0.55)
    ax.axis("off")
    ax.hlines(0, 1, k, color="black", lw=1)
    for r in range(1, k + 1):
        ax.vlines(r, -0.06, 0, color="black", lw=1)
        ax.text(r, -0.1, str(r), ha="center", va="bottom", fontsize=9)
    ax.hlines(-0.42, 1, 1 + cd, color="black", lw=1.5)
    ax.text(1 + cd / 2, -0.46, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9)
    half = (k + 1) // 2
    for i, name in enumerate(names):
        r = average_ranks[name]
        left = i < half
        y = 0.5 + 0.28 * (i if left else k - 1 - i)
        end = 0.3 - 0.2 if left else k + 0.7 + 0.2
        ax.plot([r, r, end], [0, y, y], color="black", lw=0.8)
        ax.text(end, y, f"{name} ({r:.2f})", ha="right" if left else "left", va="center", fontsize=9)
    for level, group in enumerate(cd_groups(average_ranks, cd)):
        ranks = [average_ranks[n] for n in group]
        ax.hlines(0.15 + 0.08 * level, min(ranks) - 0.05, max(ranks) + 0.05, lw=3, color="black")
    return _save(fig, path)


def cd_groups(average_ranks: dict[str, float], cd: float) -> list[list[str]]:
    """The bars of a CD diagram: maximal runs of architectures (by average rank) that lie within
    ``cd`` of each other, i.e. that the Nemenyi test cannot tell apart.

    >>> cd_groups({"a": 1.2, "b": 2.0, "c": 2.9, "d": 4.5}, cd=1.0)
    [['a', 'b'], ['b', 'c']]
    """
    names = sorted(average_ranks, key=average_ranks.get)
    groups, covered = [], -1
    for i in range(len(names)):
        j = max(j for j in range(i, len(names)) if average_ranks[names[j]] - average_ranks[names[i]] < cd)
        if j > i and j > covered:
            groups.append(names[i : j + 1])
            covered = j
    return groups


def gradcam_panel(panel: dict, label: str, path: Path, cols: int = 4) -> Path:
    """Test images with their Grad-CAM heat map over them, titled by kind and ``label``'s probability."""
    n = len(panel["kinds"])
    fig, axes = _panels(n, 2.6, 2.9, cols=cols)
    for ax, i in zip(axes, range(n), strict=True):
        ax.imshow(panel["pixels"][i].mean(axis=-1), cmap="gray", vmin=0, vmax=255)
        ax.imshow(panel["heatmaps"][i], cmap="jet", alpha=0.4, vmin=0, vmax=1)
        ax.set_title(f"{panel['kinds'][i]}\n{label} = {panel['probabilities'][i]:.2f}", fontsize=8)
        ax.axis("off")
    return _save(fig, path)
