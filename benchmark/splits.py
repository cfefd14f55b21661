"""Stage 2 — splits: stratified k-fold with an inner validation split per fold.

The folds depend only on the labels, ``k`` and the seed, so every architecture
of a run is scored on the same folds (a paired comparison).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from benchmark import UsageError
from benchmark.files import read_json, write_json


@dataclass(frozen=True)
class Fold:
    """Indices into the pooled training images.

    ``train`` is what the model is fitted on, ``val`` drives early stopping and
    checkpointing, ``score`` is the held-out fold the metrics are computed on.
    """

    train: np.ndarray
    val: np.ndarray
    score: np.ndarray


@dataclass(frozen=True)
class NestedStratifiedKFold:
    """Stratified k-fold whose training part is split again, stratified, into fit and validation.

    >>> labels = np.array([0] * 10 + [1] * 20)
    >>> folds = NestedStratifiedKFold(n_splits=5, val_fraction=0.2, seed=0).split(labels)
    >>> [(len(f.train), len(f.val), len(f.score)) for f in folds]
    [(19, 5, 6), (19, 5, 6), (19, 5, 6), (19, 5, 6), (19, 5, 6)]
    >>> np.bincount(labels[folds[0].score]).tolist()
    [2, 4]
    """

    n_splits: int = 5
    val_fraction: float = 0.1
    seed: int = 42

    def split(self, labels: np.ndarray) -> list[Fold]:
        labels = np.asarray(labels)
        self.check(labels)
        outer = StratifiedKFold(n_splits=self.n_splits, shuffle=True, random_state=self.seed)
        folds = []
        for i, (train_val, score) in enumerate(outer.split(np.zeros(len(labels)), labels)):
            try:
                train, val = train_test_split(
                    train_val, test_size=self.val_fraction, stratify=labels[train_val], random_state=self.seed + i
                )
            except ValueError as err:  # too few images for the inner split
                raise UsageError(
                    f"--val-fraction {self.val_fraction}: cannot make a stratified inner validation split "
                    f"of {len(train_val)} images ({err}). Raise --val-fraction or add images."
                ) from None
            folds.append(Fold(np.sort(train), np.sort(val), np.sort(score)))
        return folds

    def check(self, labels: np.ndarray) -> None:
        """Raise a UsageError when the labels cannot be split as asked."""
        if self.n_splits < 2:
            raise UsageError(f"--folds {self.n_splits}: cross-validation needs at least 2 folds (5 is usual).")
        if not 0 < self.val_fraction < 1:
            raise UsageError(f"--val-fraction {self.val_fraction}: give a fraction between 0 and 1, e.g. 0.1.")
        counts = np.bincount(labels, minlength=2)
        # Each class must reach every score fold, and the inner split needs 2 of each class per fold.
        need = max(self.n_splits, int(np.ceil(2 * self.n_splits / (self.n_splits - 1))))
        if counts.min() < need:
            raise UsageError(
                f"--folds {self.n_splits}: a class has only {counts.min()} image(s), but stratified "
                f"{self.n_splits}-fold cross-validation needs at least {need} per class. "
                "Add images or lower --folds."
            )
        # The smallest fold training part must give a validation split holding both classes.
        part = len(labels) - int(np.ceil(len(labels) / self.n_splits))
        if np.ceil(self.val_fraction * part) < 2 or part - np.ceil(self.val_fraction * part) < 2:
            raise UsageError(
                f"--val-fraction {self.val_fraction}: a fold's training part of {part} images gives "
                f"{int(np.ceil(self.val_fraction * part))} validation image(s); at least 2 are needed "
                f"(one per class). Raise --val-fraction to {2 / part:.2f} or more, or add images."
            )


def save_splits(path, folds: list[Fold], paths: tuple[str, ...], k: int, seed: int, val_fraction: float) -> None:
    """``splits.json``: the folds as file paths relative to ``--data``."""
    write_json(
        path,
        {
            "k": k,
            "seed": seed,
            "val_fraction": val_fraction,
            "folds": [
                {part: [paths[i] for i in getattr(f, part)] for part in ("train", "val", "score")} for f in folds
            ],
        },
    )


def load_splits(path, paths: tuple[str, ...]) -> list[Fold] | None:
    """The folds saved in ``splits.json`` as indices into ``paths``, or None if unreadable or stale."""
    saved = read_json(path)
    if saved is None:
        return None
    index = {p: i for i, p in enumerate(paths)}
    try:
        return [
            Fold(*(np.array(sorted(index[p] for p in f[part]), dtype=np.int64) for part in ("train", "val", "score")))
            for f in saved["folds"]
        ]
    except (KeyError, TypeError):
        return None
