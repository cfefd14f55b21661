"""Splits: stratified k-fold with an inner validation split per fold, optionally grouped
(images that share a patient never straddle fit, validation and score) and repeated.

The folds depend only on the labels, the groups, ``k``, the repeats and the seed, so every
architecture of a run is scored on the same folds (a paired comparison).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from benchmark import UsageError
from benchmark.store.files import read_json, write_json

# --groups presets: a regular expression whose first capture group names the group of a file name.
GROUP_PRESETS = {
    # Kermany et al.'s chest X-rays: person1000_bacteria_2931.jpeg, IM-0115-0001.jpeg, NORMAL2-IM-0102-0001.jpeg
    "kermany": r"^(person\d+|(?:NORMAL2-)?IM-\d+)[_-]",
}


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
    """Stratified k-fold whose training part is split again, stratified, into fit and validation;
    repeated ``repeats`` times with other shuffles, and grouped when ``groups`` are given.

    Fold ``j`` of the returned list is fold ``j % k`` of repeat ``j // k``; repeat 0 is the
    plain k-fold (outer seed ``seed``), repeat r shuffles with ``seed + r``. The inner split of
    fold j is drawn with ``seed + j``. With groups, both the outer folds (StratifiedGroupKFold)
    and the inner split keep each group on one side.

    >>> labels = np.array([0] * 10 + [1] * 20)
    >>> folds = NestedStratifiedKFold(n_splits=5, val_fraction=0.2, seed=0).split(labels)
    >>> [(len(f.train), len(f.val), len(f.score)) for f in folds]
    [(19, 5, 6), (19, 5, 6), (19, 5, 6), (19, 5, 6), (19, 5, 6)]
    >>> np.bincount(labels[folds[0].score]).tolist()
    [2, 4]
    >>> len(NestedStratifiedKFold(5, 0.2, 0, repeats=3).split(labels))
    15
    """

    n_splits: int = 5
    val_fraction: float = 0.1
    seed: int = 42
    repeats: int = 1

    def split(self, labels: np.ndarray, groups: np.ndarray | None = None) -> list[Fold]:
        labels = np.asarray(labels)
        self.check(labels, groups)
        folds = []
        for r in range(self.repeats):
            outer = (StratifiedKFold if groups is None else StratifiedGroupKFold)(
                n_splits=self.n_splits, shuffle=True, random_state=self.seed + r
            )
            for train_val, score in outer.split(np.zeros(len(labels)), labels, groups):
                j = len(folds)
                train, val = self._inner(train_val, labels, groups, self.seed + j)
                folds.append(Fold(np.sort(train), np.sort(val), np.sort(score)))
        return folds

    def _inner(self, train_val: np.ndarray, labels: np.ndarray, groups, seed: int):
        """(fit, validation) indices of one fold's training part."""
        try:
            if groups is None:
                return train_test_split(
                    train_val, test_size=self.val_fraction, stratify=labels[train_val], random_state=seed
                )
            inner = StratifiedGroupKFold(n_splits=max(2, round(1 / self.val_fraction)), shuffle=True, random_state=seed)
            fit, val = next(inner.split(train_val, labels[train_val], groups[train_val]))
            return train_val[fit], train_val[val]
        except ValueError as err:  # too few images for the inner split
            raise UsageError(
                f"--val-fraction {self.val_fraction}: cannot make a stratified inner validation split "
                f"of {len(train_val)} images ({err}). Raise --val-fraction or add images."
            ) from None

    def check(self, labels: np.ndarray, groups: np.ndarray | None = None, classes=None) -> None:
        """Raise a UsageError when the labels (and groups) cannot be split as asked; ``classes`` name the labels."""
        if self.n_splits < 2:
            raise UsageError(f"--folds {self.n_splits}: cross-validation needs at least 2 folds (5 is usual).")
        if self.repeats < 1:
            raise UsageError(f"--repeats {self.repeats}: give a positive whole number (1: no repetition).")
        if groups is not None:
            for c in np.unique(labels):
                n = len(set(groups[labels == c]))
                if n < self.n_splits:
                    raise UsageError(
                        f"--folds {self.n_splits}: class {c} has only {n} group(s), but grouped {self.n_splits}-fold "
                        "cross-validation needs at least one per fold. Lower --folds or check --groups."
                    )
        if not 0 < self.val_fraction < 1:
            raise UsageError(f"--val-fraction {self.val_fraction}: give a fraction between 0 and 1, e.g. 0.1.")
        counts = np.bincount(labels, minlength=2)
        # Each class must reach every score fold, and the inner split needs 2 of each class per fold.
        need = max(self.n_splits, int(np.ceil(2 * self.n_splits / (self.n_splits - 1))))
        if counts.min() < need:
            small = int(counts.argmin())
            name = f"class {classes[small]}" if classes is not None else "a class"
            raise UsageError(
                f"--folds {self.n_splits}: {name} has only {counts.min()} image(s), but stratified "
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


def file_groups(
    paths: tuple[str, ...], pattern: str | None = None, table: Path | None = None, ungrouped: str = "error"
) -> np.ndarray | None:
    """The group of each image, or None when the folds are not grouped.

    ``pattern``: a regular expression (or a :data:`GROUP_PRESETS` name) whose first capture group,
    searched in the file's name, names its group. ``table``: a CSV file with columns ``path``
    (relative to --data) and ``group``. A file without a group is an error, or (``ungrouped="own"``)
    a group of its own.

    >>> file_groups(("train/PNEUMONIA/person7_bacteria_1.jpeg", "train/NORMAL/IM-0003-0001.jpeg"), "kermany").tolist()
    ['person7', 'IM-0003']
    """
    if pattern is None and table is None:
        return None
    if table is not None:
        found = _read_group_table(Path(table))
        groups = [found.get(p) for p in paths]
        source = f"--groups-file {table}"
    else:
        regex = _compile(pattern)
        groups = [m.group(1) if (m := regex.search(PurePosixPath(p).name)) else None for p in paths]
        source = f"--groups {pattern}"
    missing = [p for p, g in zip(paths, groups, strict=True) if g is None]
    if missing and ungrouped != "own":
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise UsageError(
            f"{source}: {len(missing)} image(s) have no group: {', '.join(missing[:3])}{more}. Fix the "
            "expression or the file, or pass --ungrouped own to give each such image a group of its own."
        )
    return np.array([g if g is not None else f"own:{p}" for p, g in zip(paths, groups, strict=True)], dtype=object)


def _compile(pattern: str) -> re.Pattern:
    expression = GROUP_PRESETS.get(pattern, pattern)
    try:
        regex = re.compile(expression)
    except re.error as err:
        raise UsageError(f"--groups {pattern}: not a regular expression ({err}).") from None
    if regex.groups < 1:
        raise UsageError(
            f"--groups {pattern}: give one capture group, the part of the file name that names the group, e.g. "
            rf"'^(person\d+)_' (presets: {', '.join(GROUP_PRESETS)})."
        )
    return regex


def _read_group_table(table: Path) -> dict[str, str]:
    try:
        with open(table, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as err:
        raise UsageError(f"--groups-file {table}: cannot read it ({err.strerror}).") from None
    if not rows or not {"path", "group"} <= set(rows[0]):
        raise UsageError(f"--groups-file {table}: give a CSV file with the columns path and group.")
    return {r["path"]: r["group"] for r in rows if r["group"]}


def straddling(folds: list[Fold], groups: np.ndarray | None) -> str | None:
    """A group found in two parts (fit, validation, score) of one fold, in words; None when there is none."""
    if groups is None:
        return None
    for j, fold in enumerate(folds):
        parts = {name: set(groups[getattr(fold, name)]) for name in ("train", "val", "score")}
        for a, b in (("train", "val"), ("train", "score"), ("val", "score")):
            if shared := parts[a] & parts[b]:
                return f"group {sorted(shared)[0]!r} is in both the {a} and the {b} part of fold {j + 1}"
    return None


def save_splits(
    path, folds: list[Fold], paths: tuple[str, ...], k: int, seed: int, val_fraction: float, groups=None, repeats=1
) -> None:
    """``splits.json``: the folds as file paths relative to ``--data``, and each image's group when grouped."""
    data = {
        "k": k,
        "seed": seed,
        "val_fraction": val_fraction,
        "repeats": repeats,
        "folds": [
            {"repeat": j // k, **{part: [paths[i] for i in getattr(f, part)] for part in ("train", "val", "score")}}
            for j, f in enumerate(folds)
        ],
    }
    if groups is not None:
        data["groups"] = dict(zip(paths, groups.tolist(), strict=True))
    write_json(path, data)


def load_splits(path, paths: tuple[str, ...], groups=None) -> list[Fold] | None:
    """The folds saved in ``splits.json`` as indices into ``paths``, or None if unreadable, stale, or made
    with other groups."""
    saved = read_json(path)
    if saved is None:
        return None
    if (groups is None) != ("groups" not in saved) or (
        groups is not None and [saved["groups"].get(p) for p in paths] != groups.tolist()
    ):
        return None
    index = {p: i for i, p in enumerate(paths)}
    try:
        return [
            Fold(*(np.array(sorted(index[p] for p in f[part]), dtype=np.int64) for part in ("train", "val", "score")))
            for f in saved["folds"]
        ]
    except (KeyError, TypeError):
        return None
