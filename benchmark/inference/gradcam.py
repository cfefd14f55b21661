"""Inference: Grad-CAM, where in the image the fold models look (the report's Grad-CAM section).

Selvaraju et al. 2017: the gradient of the predicted class's score with respect to
the last convolutional feature map, averaged over its height and width, weights
that map's channels; their weighted sum, rectified and scaled to [0, 1], is
upsampled over the image. The gradient comes from the active backend's autodiff
(``tf.GradientTape``, ``jax.grad`` or ``torch.autograd``), so it works wherever
training does.

After the held-out stage, :func:`explain_heldout` picks test images of each kind
(true/false positives/negatives of the fold ensemble at 0.5), averages the k fold
models' heat maps and saves them with the images in ``<arch>/gradcam.npz``; the
report draws them from that file alone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from benchmark.data.images import Images
from benchmark.inference.predict import fold_ensemble, read_heldout
from benchmark.store.runfolder import RunFolder
from benchmark.training.fit import load_fold_model, split_input

KINDS = ("true positive", "true negative", "false positive", "false negative")


def target_layer(model: keras.Model) -> keras.layers.Layer:
    """The last convolution, followed through the layers that keep its shape (batch norm, ReLU).

    Falls back to the last layer with a spatial (4-D) output when the rest of the
    network cannot be run from that convolution alone (e.g. a residual addition).
    """
    spatial = [i for i, layer in enumerate(model.layers) if len(layer.output.shape) == 4]
    if not spatial:
        raise ValueError(f"{model.name} has no layer with a spatial (4-D) output")
    conv_types = (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D)
    convs = [i for i in spatial if isinstance(model.layers[i], conv_types)]
    i = convs[-1] if convs else spatial[-1]
    while i + 1 < len(model.layers) and model.layers[i + 1].output.shape == model.layers[i].output.shape:
        i += 1
    try:
        _split(model, model.layers[i])
    except ValueError:
        i = spatial[-1]
    return model.layers[i]


def _split(model: keras.Model, layer: keras.layers.Layer) -> tuple[keras.Model, keras.Model]:
    """(input → the layer's feature map, feature map → output)."""
    return keras.Model(model.input, layer.output), keras.Model(layer.output, model.output)


def _gradient(head: keras.Model, features: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """d(Σ weights · output)/d(features) for each image, with the active backend's autodiff."""
    name = keras.backend.backend()
    weights = weights.astype("float32")
    if name == "tensorflow":
        import tensorflow as tf

        a = tf.convert_to_tensor(features)
        with tf.GradientTape() as tape:
            tape.watch(a)
            score = tf.reduce_sum(head(a, training=False) * weights)
        return tape.gradient(score, a).numpy()
    if name == "jax":
        import jax

        return np.asarray(jax.grad(lambda a: (head(a, training=False) * weights).sum())(features))
    if name == "torch":
        import torch

        a = torch.tensor(features, requires_grad=True, device=keras.backend.get_device() or "cpu")
        (head(a, training=False) * torch.as_tensor(weights, device=a.device)).sum().backward()
        return a.grad.cpu().numpy()
    raise ValueError(f"Grad-CAM needs the tensorflow, jax or torch backend, not {name}")


def heatmaps(model: keras.Model, images: np.ndarray, signs: np.ndarray, layer=None) -> np.ndarray:
    """Grad-CAM maps of ``images`` (n, H, W, C) as (n, H, W) in [0, 1].

    ``signs`` is +1 where the positive class is explained, −1 for the negative one
    (the gradient of 1 − p); for a K-class softmax it is a one-hot row per image, the
    class explained. A map that is zero everywhere means no region raised that class's score.

    >>> import keras, numpy as np
    >>> inputs = keras.Input((8, 8, 1))
    >>> x = keras.layers.Conv2D(2, 3, padding="same", activation="relu")(inputs)
    >>> outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(x))
    >>> heatmaps(keras.Model(inputs, outputs), np.ones((3, 8, 8, 1), "float32"), np.ones(3)).shape
    (3, 8, 8)
    """
    features, head = _split(model, layer or target_layer(model))
    a = np.asarray(keras.ops.convert_to_numpy(features(images, training=False)), dtype="float32")
    signs = np.asarray(signs, dtype="float32")
    grads = _gradient(head, a, signs[:, None] if signs.ndim == 1 else signs)
    cams = np.maximum((a * grads.mean(axis=(1, 2), keepdims=True)).sum(axis=-1), 0)
    height, width = images.shape[1:3]
    cams = np.stack([_resize(c, width, height) for c in cams])
    peak = cams.max(axis=(1, 2), keepdims=True)
    return np.divide(cams, peak, out=np.zeros_like(cams), where=peak > 0)


def _resize(cam: np.ndarray, width: int, height: int) -> np.ndarray:
    image = Image.fromarray(cam.astype("float32"), mode="F").resize((width, height), Image.BILINEAR)
    return np.maximum(np.asarray(image), 0)


def pick(labels: np.ndarray, probabilities: np.ndarray, per_kind: int = 2, threshold: float = 0.5, classes=None):
    """(index, kind) of the ``per_kind`` most confident images of each kind: in KINDS order for the
    positive class's probabilities (n,); for K-class probabilities (n, K), per true class the
    right ones and the wrong ones (each class named from ``classes``).

    >>> pick(np.array([1, 1, 0, 0, 1]), np.array([0.9, 0.6, 0.2, 0.7, 0.1]), per_kind=1)
    [(0, 'true positive'), (2, 'true negative'), (3, 'false positive'), (4, 'false negative')]
    >>> pick(np.array([0, 0, 1]), np.array([[.9, .1], [.3, .7], [.2, .8]]), 1, classes="ab")
    [(0, 'a, right'), (1, 'a, taken for b'), (2, 'b, right')]
    """
    if probabilities.ndim == 2:
        return _pick_classes(
            labels, probabilities, per_kind, classes or [str(c) for c in range(probabilities.shape[1])]
        )
    predicted = probabilities >= threshold
    confidence = np.abs(probabilities - threshold)
    masks = (labels.astype(bool) & predicted, ~labels.astype(bool) & ~predicted)
    masks += (~labels.astype(bool) & predicted, labels.astype(bool) & ~predicted)
    chosen = []
    for kind, mask in zip(KINDS, masks, strict=True):
        index = np.flatnonzero(mask)
        chosen += [(int(i), kind) for i in index[np.argsort(-confidence[index], kind="stable")][:per_kind]]
    return chosen


def _pick_classes(labels: np.ndarray, probabilities: np.ndarray, per_kind: int, classes) -> list:
    predicted, confidence = probabilities.argmax(axis=1), probabilities.max(axis=1)
    chosen = []
    for c in range(probabilities.shape[1]):
        for right in (True, False):
            index = np.flatnonzero((labels == c) & ((predicted == c) == right))
            for i in index[np.argsort(-confidence[index], kind="stable")][:per_kind]:
                chosen.append(
                    (int(i), f"{classes[c]}, right" if right else f"{classes[c]}, taken for {classes[predicted[i]]}")
                )
    return chosen


def signs_of(probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """What each image's map explains: the predicted class (for two classes +1 where it is the positive one,
    −1 where the negative, decided at ``threshold``; for K a one-hot row)."""
    if probabilities.ndim == 1:
        return np.where(probabilities >= threshold, 1.0, -1.0)
    return np.eye(probabilities.shape[1])[probabilities.argmax(axis=1)]


def fold_heatmaps(models: list[Path], pixels: np.ndarray, signs: np.ndarray) -> tuple[np.ndarray, str]:
    """The saved models' Grad-CAM maps of ``pixels`` averaged, (n, H, W) in [0, 1], and the layer they come from."""
    maps = []
    for path in models:
        preprocess, arch = split_input(load_fold_model(path))
        images = keras.ops.convert_to_numpy(preprocess(pixels, training=False))
        maps.append(heatmaps(arch, images, signs))
    return np.mean(maps, axis=0).astype("float32"), target_layer(arch).name


def overlay(pixels: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """An image (H, W, 1 or 3, uint8) in grey with its heat map in red over it, (H, W, 3) uint8.

    >>> overlay(np.full((2, 2, 1), 100, np.uint8), np.array([[0, 1], [0, 0]], "float32"))[0, :, 0].tolist()
    [100, 178]
    """
    grey = pixels.astype("float32").mean(axis=-1, keepdims=True).repeat(3, axis=-1)
    weight = (alpha * heatmap)[..., None]
    return (grey * (1 - weight) + np.array([255.0, 0.0, 0.0]) * weight).round().astype(np.uint8)


def explain_heldout(
    folder: RunFolder, names: list[str], n_folds: int, test: Images, log: Callable = print, classes=None
) -> int:
    """Save ``<arch>/gradcam.npz`` for each name that has held-out predictions and none yet; return how many.
    Two classes: the positive class's score is explained for predicted positives, 1 − it for predicted
    negatives; K classes: the predicted class's probability."""
    done = 0
    for name in names:
        runs = read_heldout(folder, name, n_folds)
        if folder.gradcam(name).exists() or runs is None:
            continue
        probability = fold_ensemble(runs)
        chosen = pick(test.labels, probability, classes=classes)
        if not chosen:
            continue
        index = np.array([i for i, _ in chosen], dtype=int)
        signs = signs_of(probability[index])
        shown = probability[index] if probability.ndim == 1 else probability[index].max(axis=1)
        maps, layer = fold_heatmaps([folder.model_path(name, i) for i in range(n_folds)], test.pixels[index], signs)
        panel = {
            "pixels": test.pixels[index],
            "heatmaps": maps,
            "kinds": np.array([k for _, k in chosen]),
            "paths": np.array([test.paths[i] for i in index]),
            "labels": test.labels[index],
            "probabilities": shown,
            "layer": np.array(layer),
        }
        folder.write_gradcam(name, panel)
        done += 1
    if done:
        log(f"Grad-CAM: heat maps of {done} architecture(s) over {len(index)} test images each")
    return done
