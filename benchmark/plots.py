"""Figures of the report, drawn with matplotlib/seaborn and saved as PNG (no screen needed)."""

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

from benchmark.metrics import METRICS  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    long = folds[folds.arch.isin(order)].melt(id_vars=["arch", "fold"], value_vars=list(METRICS), var_name="metric")
    fig, axes = _panels(len(METRICS), 4.4, 3.2)
    for ax, metric in zip(axes, METRICS, strict=True):
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
    return _save(fig, path)


def roc_pr(oof: pd.DataFrame, order: list[str], path: Path) -> Path:
    """ROC and precision-recall curves of every architecture's out-of-fold probabilities."""
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name in order:
        part = oof[oof.arch == name]
        fpr, tpr, _ = roc_curve(part.label, part.probability)
        precision, recall, _ = precision_recall_curve(part.label, part.probability)
        roc_ax.plot(fpr, tpr, lw=1.2, label=name)
        pr_ax.plot(recall, precision, lw=1.2, label=name)
    roc_ax.plot([0, 1], [0, 1], ":", color="grey")
    roc_ax.set(xlabel="false positive rate (1 − specificity)", ylabel="true positive rate (recall)", title="ROC")
    pr_ax.set(xlabel="recall", ylabel="precision", title="Precision–recall")
    roc_ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def reliability(oof: pd.DataFrame, order: list[str], path: Path) -> Path:
    """Calibration of the out-of-fold probabilities: observed positive rate per predicted-probability bin."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name in order:
        part = oof[oof.arch == name]
        observed, predicted = calibration_curve(part.label, part.probability, n_bins=10, strategy="uniform")
        ax.plot(predicted, observed, "o-", ms=3, lw=1.1, label=name)
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="mean predicted probability", ylabel="observed positive rate", title="Reliability")
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)
