"""Grad-CAM: the heat map follows what raises the score, for every registry architecture,
under TensorFlow (in this process) and JAX (a subprocess)."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import architectures
from benchmark.inference.gradcam import heatmaps, pick, target_layer
from benchmark.training.fit import assemble, split_input
from tests.conftest import ROOT

SIZE = 32


def blob_model() -> keras.Model:
    """Brightness detector: all-positive weights, so the score rises wherever the image is bright."""
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", kernel_initializer="ones")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", kernel_initializer="ones", bias_initializer="zeros")(x)
    return keras.Model(inputs, outputs)


def blob(row: int, col: int) -> np.ndarray:
    image = np.zeros((SIZE, SIZE, 1), "float32")
    image[row : row + 6, col : col + 6] = 1.0
    return image


def check_heat_map_follows_a_bright_blob() -> None:
    model = blob_model()
    images = np.stack([blob(2, 3), blob(22, 24)])
    maps = heatmaps(model, images, np.ones(2))
    assert maps.shape == (2, SIZE, SIZE)
    for heat, (row, col) in zip(maps, [(2, 3), (22, 24)], strict=True):
        peak = np.unravel_index(np.argmax(heat), heat.shape)
        assert row <= peak[0] < row + 6 and col <= peak[1] < col + 6, peak
        assert heat.max() == pytest.approx(1.0)
        assert heat[row : row + 6, col : col + 6].mean() > 5 * heat.mean() / 2  # concentrated on the blob
    # Explaining the negative class: nothing in the image lowers a brightness score, so no region lights up.
    assert np.all(heatmaps(model, images, -np.ones(2)) == 0)


def check_every_registry_architecture() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (3, SIZE, SIZE, 1), dtype=np.uint8)
    for name in architectures.list_architectures():
        spec = architectures.get(name)
        if not spec.build.__module__.startswith("architectures."):
            continue  # one loaded by another test from a file (e.g. a broken one)
        model, _ = assemble(spec.build, (SIZE, SIZE, 1), augment="light")
        preprocess, arch = split_input(model)
        images = keras.ops.convert_to_numpy(preprocess(pixels, training=False))
        np.testing.assert_allclose(images, pixels / 255, atol=1e-6)  # augmentation is off outside training
        assert len(target_layer(arch).output.shape) == 4, name
        maps = heatmaps(arch, images, np.array([1.0, -1.0, 1.0]))
        assert maps.shape == (3, SIZE, SIZE) and np.all(np.isfinite(maps)), name
        assert maps.min() >= 0 and maps.max() <= 1, name


@pytest.mark.slow
def test_heat_map_follows_a_bright_blob():
    check_heat_map_follows_a_bright_blob()


@pytest.mark.slow
def test_every_registry_architecture_gives_a_heat_map():
    check_every_registry_architecture()


def test_target_layer_is_the_rectified_last_convolution():
    _, arch = assemble(architectures.get("baseline_batchnorm").build, (SIZE, SIZE, 1), augment="none")
    layer = target_layer(arch)
    assert type(layer).__name__ == "Activation" and tuple(layer.output.shape) == (None, 8, 8, 64)


def test_target_layer_of_a_residual_block_is_a_feature_map_the_head_can_start_from():
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    y = keras.layers.MaxPooling2D()(keras.layers.Conv2D(8, 3, padding="same")(x))
    x = keras.layers.Add()([keras.layers.MaxPooling2D()(x), y])  # the last conv's output alone cannot run the rest
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(x))
    layer = target_layer(keras.Model(inputs, outputs))
    assert type(layer).__name__ == "Add"


def test_pick_takes_the_most_confident_of_each_kind():
    labels = np.array([1, 1, 1, 0, 0, 0, 1])
    probabilities = np.array([0.99, 0.7, 0.2, 0.1, 0.6, 0.95, 0.51])
    assert pick(labels, probabilities) == [
        (0, "true positive"),
        (1, "true positive"),
        (3, "true negative"),
        (5, "false positive"),
        (4, "false positive"),
        (2, "false negative"),
    ]


@pytest.mark.slow
def test_jax_backend_gives_the_same_behaviour():
    code = (
        "from tests.test_gradcam import check_heat_map_follows_a_bright_blob, check_every_registry_architecture\n"
        "check_heat_map_follows_a_bright_blob(); check_every_registry_architecture()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
