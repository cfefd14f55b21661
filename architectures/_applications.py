"""Keras's own applications as candidates: ``--archs keras:DenseNet121,keras:EfficientNetV2*``.

Each candidate is the application's backbone without its top, global average pooling, dropout and one
sigmoid unit, ending as the registry's architectures do (the tool puts a K-class softmax on the same
features for more classes), and goes through the same folds, class weights, output bias and early
stopping. Builders receive pixels in [0, 1]; each family gets them scaled as its own
``preprocess_input`` scales 0–255 pixels, by a layer inside the model, so a saved fold model carries
its scaling. Trained from scratch, a greyscale input gets a one-channel stem.

The module's name starts with ``_``: the registry does not import it as an architecture file, so
``--archs all`` keeps meaning the registry's own architectures.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

PREFIX = "keras:"

# keras.applications module → how its preprocess_input scales 0–255 pixels.
SCALING = {
    "convnext": "inside",  # the model rescales 0–255 pixels itself
    "efficientnet": "inside",
    "efficientnet_v2": "inside",
    "mobilenet_v3": "inside",
    "densenet": "torch",  # x / 255, then the ImageNet mean and std per channel
    "inception_resnet_v2": "tf",  # x / 127.5 − 1
    "inception_v3": "tf",
    "mobilenet": "tf",
    "mobilenet_v2": "tf",
    "nasnet": "tf",
    "resnet_v2": "tf",
    "xception": "tf",
    "resnet": "caffe",  # RGB → BGR, then the ImageNet mean (0–255) subtracted
    "vgg16": "caffe",
    "vgg19": "caffe",
}
TORCH_MEAN, TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def family(application: str) -> str:
    """The keras.applications module that defines ``application`` (``DenseNet121`` → ``densenet``)."""
    import keras

    return getattr(keras.applications, application).__module__.rsplit(".", 1)[-1]


def applications() -> list[str]:
    """Every application this tool can build, by its Keras name."""
    import keras

    return sorted(n for n in dir(keras.applications) if n[:1].isupper() and family(n) in SCALING)


def scaling(application: str, channels: int):
    """The layer that maps [0, 1] pixels to what ``application`` expects (its ``preprocess_input``
    applied to 0–255 pixels). With one channel, the per-channel constants are averaged."""
    from keras import layers

    mode = SCALING[family(application)]
    if mode == "inside":
        return layers.Rescaling(255.0, name="pixels_0_255")
    if mode == "tf":
        return layers.Rescaling(2.0, offset=-1.0, name="pixels_minus1_1")
    if mode == "torch":
        mean, std = (TORCH_MEAN, TORCH_STD) if channels == 3 else ([np.mean(TORCH_MEAN)], [np.mean(TORCH_STD)])
        return layers.Normalization(mean=list(mean), variance=[s * s for s in std], name="pixels_imagenet_standard")
    if channels == 1:
        return layers.Rescaling(255.0, offset=-float(np.mean(CAFFE_MEAN_BGR)), name="pixels_caffe")
    # RGB → BGR and the mean, as one fixed linear map of the channels: out_c = 255 · x_(2−c) − mean_c
    flip = (255.0 * np.eye(3)[::-1]).tolist()
    return layers.Dense(
        3,
        trainable=False,
        kernel_initializer=_constant(flip),
        bias_initializer=_constant([-m for m in CAFFE_MEAN_BGR]),
        name="pixels_caffe",
    )


def _constant(value: list):
    import keras

    return keras.initializers.Constant(value)


def build(input_shape: tuple[int, int, int], application: str, weights: str | None = None, dropout: float = 0.2):
    """``application``'s backbone with global average pooling, dropout and a sigmoid unit. Built on the
    scaled input tensor, so its layers sit in this model's own graph (Grad-CAM finds its last convolution,
    batch-norm re-estimation its layers). ``weights``: None (from scratch), ``"imagenet"`` (Keras's
    cache) or a folder holding Keras's weight files under their own names; pretrained weights need
    three channels, so a greyscale image is replicated to three."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape)
    x, channels = inputs, input_shape[-1]
    if weights not in (None, "none") and channels == 1:
        x, channels = layers.Concatenate(name="grey_to_rgb")([x, x, x]), 3
    scale = scaling(application, channels)
    x = scale(x)
    shape = (*input_shape[:2], channels)
    backbone = getattr(keras.applications, application)(
        include_top=False,
        weights=None,
        input_tensor=x,
        input_shape=shape,  # input_shape: its size check
    )
    if weights not in (None, "none"):
        path = weights_file(application, weights, shape)
        trained = getattr(keras.applications, application)(include_top=False, weights=str(path), input_shape=shape)
        own = {"grey_to_rgb", scale.name}  # this module's layers, not the backbone's
        ours = [layer for layer in backbone.layers if layer.weights and layer.name not in own]
        for mine, theirs in zip(ours, [layer for layer in trained.layers if layer.weights], strict=True):
            mine.set_weights(theirs.get_weights())
    x = layers.GlobalAveragePooling2D(name="pool")(backbone.output)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="head")(x)
    return keras.Model(inputs, outputs, name=application)


class _Named(Exception):
    """Raised in place of a download: the weight file Keras would fetch."""

    def __init__(self, name: str, origin: str):
        super().__init__(name)
        self.name, self.origin = name, origin


@functools.cache  # it builds the application: once per process, not once per fold
def weight_file_name(application: str, shape: tuple[int, int, int]) -> tuple[str, str]:
    """(file name, address) of ``application``'s ImageNet weights without top, as Keras names them: asked
    of Keras itself, which names the file just before it would download it (nothing is downloaded). No
    session is cleared here: it runs in the middle of :func:`build`."""
    import keras
    from keras.src.utils import file_utils

    def named(fname, origin=None, **kwargs):
        raise _Named(fname, origin)

    real, file_utils.get_file = file_utils.get_file, named
    try:
        getattr(keras.applications, application)(include_top=False, weights="imagenet", input_shape=shape)
    except _Named as found:
        return found.name, found.origin
    finally:
        file_utils.get_file = real
    raise ValueError(f"keras.applications.{application} names no weight file")


def weights_file(application: str, source: str, shape: tuple[int, int, int]) -> Path:
    """The weight file ``application`` starts from: in Keras's cache (``source="imagenet"``) or in the
    folder ``source``. A missing file is a UsageError naming it, where Keras downloads it from and where
    to put it."""
    from keras.src.backend.config import keras_home

    from benchmark import UsageError

    name, origin = weight_file_name(application, shape)
    folder = Path(keras_home()) / "models" if source == "imagenet" else Path(source)  # where Keras keeps them
    path = folder / name
    if not path.is_file():
        raise UsageError(
            f"--weights {source}: {path} is missing: keras.applications.{application}'s ImageNet weights without "
            f"top. Download {origin} on a machine with internet and put it in {folder} (the file name as it is)."
        )
    return path


def builder(application: str):
    """The registry's builder of ``application``."""
    return functools.partial(build, application=application)
