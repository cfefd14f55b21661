"""Inference: the saved fold models predict the official test split, once, after cross-validation.

The probabilities are saved per fold (``<arch>/fold-<i>/test_predictions.csv``); the fold ensemble
is their mean. Evaluation (:mod:`benchmark.evaluation.heldout`) and the report read them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.images import Images
from benchmark.store.files import write_csv
from benchmark.store.runfolder import RunFolder, predictions_table, probabilities_of, probability_columns


def predict_heldout(
    folder: RunFolder,
    names: list[str],
    n_folds: int,
    test: Images,
    batch_size: int,
    log: Callable = print,
    tta: bool = False,
    where: Callable[[str, int], Path] | None = None,
) -> int:
    """Predict ``test`` with every saved fold model whose test predictions are missing; return how many ran.

    ``probability`` (or ``probability_<label>`` per class) is the model's output on the image;
    with ``tta``, ``probability_tta`` (``probability_tta_<label>``) is its mean over :func:`tta_views`
    too (a file without it is redone). ``where(arch, fold)``: the file of a fold's predictions (by default
    the official test split's, ``RunFolder.test_predictions``).
    """
    from benchmark.training.fit import load_fold_model  # here, so that reading saved predictions needs no backend

    done = 0
    for name in names:
        for i in range(n_folds):
            out, model_path = (where or folder.test_predictions)(name, i), folder.model_path(name, i)
            has_tta = any(c.startswith("probability_tta") for c in _columns(out))
            if not model_path.exists() or (out.exists() and (not tta or has_tta)):
                continue
            model = load_fold_model(model_path)
            columns = {}
            if tta:
                views = np.mean([model_output(model, view, batch_size) for view in tta_views(test.pixels)], axis=0)
                columns = probability_columns(views, "probability_tta")
            write_csv(out, prediction_table(test, model_output(model, test.pixels, batch_size), **columns))
            done += 1
    if done:
        what = "held-out test split" if where is None else "held-out images"
        log(f"{what}: {done} fold model(s) scored {len(test.paths)} images" + (" (+ TTA)" if tta else ""))
    return done


def model_output(model, pixels: np.ndarray, batch_size: int) -> np.ndarray:
    """A fold model's probabilities of ``pixels`` (uint8, as decoded): (n,) of the positive class, or (n, K).
    Every prediction of saved models goes through here, so the same images give the same numbers."""
    p = np.asarray(model.predict(pixels, batch_size=max(batch_size, 128), verbose=0))
    return p.reshape(-1) if p.shape[1] == 1 else p


def model_outputs(models: list[Path], pixels: np.ndarray, batch_size: int) -> np.ndarray:
    """Each saved model's :func:`model_output` of ``pixels`` in ``models``' order: (models, n) or (models, n, K)."""
    from benchmark.training.fit import load_fold_model  # here, so that reading saved predictions needs no backend

    return np.stack([model_output(load_fold_model(path), pixels, batch_size) for path in models])


def prediction_table(images: Images, probabilities: np.ndarray, **columns) -> pd.DataFrame:
    """A held-out predictions file of ``images``: path, label, the probability column(s), then ``columns``."""
    return predictions_table(images.paths, images.labels, probabilities, **columns)


def saved_folds(folder: RunFolder, name: str, n_folds: int) -> list[int]:
    """The folds whose model of ``name`` is saved (all, one with ``--save-models best``, none with ``none``)."""
    return [i for i in range(n_folds) if folder.model_path(name, i).exists()]


def tta_views(pixels: np.ndarray, fraction: float = 0.04) -> list[np.ndarray]:
    """The image and four copies shifted by ``fraction`` of its size up, down, left and right
    (edges repeated): the translations training augmentation already showed the model.

    >>> views = tta_views(np.arange(25, dtype=np.uint8).reshape(1, 5, 5, 1), fraction=0.2)
    >>> len(views), views[1][0, :, :, 0].tolist()[0]
    (5, [5, 6, 7, 8, 9])
    """
    size = pixels.shape[1]
    k = max(1, round(fraction * size))
    padded = np.pad(pixels, ((0, 0), (k, k), (k, k), (0, 0)), mode="edge")
    crops = [(k, k), (2 * k, k), (0, k), (k, 2 * k), (k, 0)]  # (row, col) offsets: same, up, down, left, right
    return [padded[:, r : r + size, c : c + pixels.shape[2]] for r, c in crops]


def _columns(path) -> list[str]:
    try:
        return list(pd.read_csv(path, nrows=0).columns)
    except (OSError, ValueError):
        return []


def read_heldout(folder: RunFolder, name: str, n_folds: int) -> list[pd.DataFrame] | None:
    """Every fold's test predictions of ``name``, or None unless all ``n_folds`` are saved."""
    paths = [folder.test_predictions(name, i) for i in range(n_folds)]
    if not all(p.exists() for p in paths):
        return None
    return [pd.read_csv(p) for p in paths]


def site_predictions(folder: RunFolder, site: str, models: dict[str, list[int]]) -> dict[str, list[pd.DataFrame]]:
    """An external site's saved predictions (``benchmark evaluate``): each architecture's, one per fold model."""
    return {n: [pd.read_csv(folder.site_predictions(site, n, i)) for i in folds] for n, folds in models.items()}


def fold_ensemble(runs: list[pd.DataFrame], column: str = "probability") -> np.ndarray:
    """The fold ensemble's test probabilities: the mean over the fold models of ``column`` ((n,) or (n, K))."""
    return np.mean([probabilities_of(r, column) for r in runs], axis=0)
