"""Evaluation: loss-curve flags in words — what the curves say, the number behind it, the remedy.

Thresholds are rules of thumb, stated so a reader can disagree with them.
"""

from __future__ import annotations

OSCILLATION = 0.5  # more than half of the steps turn around
OVERFIT_GAP = 0.1  # validation loss above training loss at the best epoch
FOLD_STD = 0.05  # std of the ranking metric over folds
EARLY_BEST = 0.5  # share of folds whose best epoch is the first


def flags(curves: dict, std: float, rank_by: str, max_epochs: int, patience: int) -> list[str]:
    """Flags for one architecture: its loss-curve statistics (results.json's ``curves``) and the std of
    ``rank_by`` over its folds.

    >>> curves = {"oscillation": {"mean": 0.62}, "gap": {"mean": 0.41}, "best_epoch": [10, 10, 4],
    ...           "epochs": [10, 10, 9], "suggested_patience": 2}
    >>> for line in flags(curves, 0.02, "f1", max_epochs=10, patience=3): print(line)
    validation loss oscillates (index 0.62): lower the learning rate or raise the batch size
    overfits (gap 0.41 at the best epoch): add regularisation or augmentation
    hit the epoch limit in 2/3 folds: raise --epochs
    """
    out = []
    n = len(curves["epochs"])
    if curves["oscillation"]["mean"] > OSCILLATION:
        out.append(
            f"validation loss oscillates (index {curves['oscillation']['mean']:.2f}): "
            "lower the learning rate or raise the batch size"
        )
    if curves["gap"]["mean"] > OVERFIT_GAP:
        out.append(f"overfits (gap {curves['gap']['mean']:.2f} at the best epoch): add regularisation or augmentation")
    at_limit = sum(b == e == max_epochs for b, e in zip(curves["best_epoch"], curves["epochs"], strict=True))
    if at_limit:
        out.append(f"hit the epoch limit in {at_limit}/{n} folds: raise --epochs")
    # A fold that ran one epoch (--epochs 1) has its best there whatever the learning rate: only folds
    # that ran on past epoch 1 without improving on it can point at the learning rate.
    longer = [b for b, e in zip(curves["best_epoch"], curves["epochs"], strict=True) if e > 1]
    first = sum(b == 1 for b in longer)
    if longer and first / len(longer) >= EARLY_BEST:
        out.append(
            f"best validation loss at epoch 1 in {first}/{len(longer)} folds: the validation loss is unstable "
            "early; try a lower --lr or a longer --patience"
        )
    if std > FOLD_STD:
        out.append(f"folds disagree (std of {rank_by} {std:.2f}): compare with care; more folds narrow it")
    if curves["suggested_patience"] >= patience:
        out.append(
            f"a fold needed the full patience of {patience} epochs before improving again "
            f"(suggested patience {curves['suggested_patience']}): a longer --patience may pay off"
        )
    return out
