"""Stage 6 — held-out evaluation: the saved fold models score the official test split, once.

It runs after cross-validation and feeds nothing back: models, early stopping,
thresholds and the ranking never see the test images. The probabilities are saved
per fold (``<arch>/fold-<i>/test_predictions.csv``) for the report to aggregate.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from benchmark.data import Images
from benchmark.files import write_csv
from benchmark.output import RunFolder

TEST_PREDICTIONS = "test_predictions.csv"
GRADCAM = "gradcam.npz"  # written by benchmark.gradcam


def predict_heldout(
    folder: RunFolder, names: list[str], n_folds: int, test: Images, batch_size: int, log: Callable = print
) -> int:
    """Predict ``test`` with every saved fold model that has no test predictions yet; return how many ran."""
    import keras  # here, so that reading saved predictions (the report) needs no backend

    done = 0
    for name in names:
        for i in range(n_folds):
            out, model_path = folder.fold_dir(name, i) / TEST_PREDICTIONS, folder.model_path(name, i)
            if out.exists() or not model_path.exists():
                continue
            model = keras.models.load_model(model_path)
            probabilities = np.asarray(model.predict(test.pixels, batch_size=max(batch_size, 128), verbose=0))
            frame = pd.DataFrame({"path": test.paths, "label": test.labels.astype(int)})
            write_csv(out, frame.assign(probability=probabilities.reshape(-1).astype(float)))
            done += 1
    if done:
        log(f"held-out test split: {done} fold model(s) scored {len(test.paths)} images")
    return done


def read_heldout(folder: RunFolder, name: str, n_folds: int) -> list[pd.DataFrame] | None:
    """Every fold's test predictions of ``name``, or None unless all ``n_folds`` are saved."""
    paths = [folder.fold_dir(name, i) / TEST_PREDICTIONS for i in range(n_folds)]
    if not all(p.exists() for p in paths):
        return None
    return [pd.read_csv(p) for p in paths]


def read_gradcam(folder: RunFolder, name: str) -> dict | None:
    """The saved Grad-CAM panel of ``name`` (pixels, heatmaps, kinds, paths, labels, probabilities), or None."""
    path = folder.arch_dir(name) / GRADCAM
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError):  # unreadable: the next run redoes it
        return None
