"""Inference: one deployable model of an architecture's saved fold models (``benchmark export``).

The fold models without their augmentation (inactive outside training, and not exportable to ONNX), fed
the same uint8 pixels, averaged inside the graph: the fold ensemble the report scores, in one file. The
scaling to [0, 1] is each fold model's own first layer.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import keras
import numpy as np

from benchmark.store.files import atomic_path
from benchmark.store.runfolder import safe_name
from benchmark.training.fit import load_fold_model

FORMATS = {"keras": "model.keras", "onnx": "model.onnx", "savedmodel": "savedmodel"}  # --format → file in --out


def without_augmentation(model: keras.Model, name: str) -> keras.Model:
    """A saved fold model (uint8 pixels → probabilities) without its augmentation layers, called ``name``."""
    inputs = keras.Input(model.inputs[0].shape[1:], dtype="uint8", name="pixels")
    x = inputs
    for layer in model.layers:  # in order: the input, the scaling, the augmentation, the architecture, float32
        if not isinstance(layer, keras.layers.InputLayer) and layer.name != "augmentation":
            x = layer(x)
    return keras.Model(inputs, x, name=name)


def ensemble_model(models: dict[str, Path], name: str) -> keras.Model:
    """The saved ``models`` (member name → model file: the fold models, or the refit alone) as one model called
    ``name``: uint8 images (n, size, size, channels) → the mean of their probabilities, (n, 1) of the positive
    class or (n, K)."""
    members = [without_augmentation(load_fold_model(path), member) for member, path in models.items()]
    inputs = keras.Input(members[0].inputs[0].shape[1:], dtype="uint8", name="pixels")
    outputs = [member(inputs) for member in members]
    mean = keras.layers.Average(name="fold_ensemble")(outputs) if len(outputs) > 1 else outputs[0]
    return keras.Model(inputs, mean, name=safe_name(name))


def save(model: keras.Model, fmt: str, path: Path) -> None:
    """``model`` written in ``fmt`` (a key of FORMATS) at ``path``, whole or not at all (a temporary name first)."""
    if fmt == "keras":
        with atomic_path(path) as tmp:
            model.save(tmp)
        return
    model(np.zeros((1, *model.inputs[0].shape[1:]), "uint8"))  # Keras exports only a model that has run
    if fmt == "onnx":
        with atomic_path(path) as tmp:
            model.export(str(tmp), format="onnx", verbose=False)
        return
    tmp = path.with_name(f".{path.name}.tmp")  # a SavedModel is a folder
    shutil.rmtree(tmp, ignore_errors=True)
    model.export(str(tmp), format="tf_saved_model", verbose=False)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
