"""The baseline family: three conv/pool blocks and a dense head, with optional
batch normalisation and dropout, so their effect is measured one at a time."""

import keras
from keras import layers

from architectures import register

# Keras's default 0.99 leaves the inference-time statistics far off after the ~60 steps of a
# first epoch on one fold, so the validation loss is meaningless early and early stopping
# ends training at a constant prediction. 0.9 (PyTorch's default) settles within an epoch.
BN_MOMENTUM = 0.9


def conv_net(input_shape, filters, *, batchnorm=False, dropout=0.0, dense=128, head="flatten", name="conv_net"):
    """Conv(3×3) → [BN] → ReLU → MaxPool per entry of ``filters``, then the head and one sigmoid unit.

    ``head="flatten"``: Flatten → Dense(``dense``) → sigmoid, a weight per pixel of the last map.
    ``head="gap"``: GlobalAveragePooling → sigmoid, a weight per channel, wherever it fires.
    """
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for n in filters:
        # With batch norm the conv bias is redundant (BN's beta replaces it).
        x = layers.Conv2D(n, 3, padding="same", use_bias=not batchnorm)(x)
        if batchnorm:
            x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
        x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D()(x)
    if head == "gap":
        x = layers.GlobalAveragePooling2D()(x)
    else:
        x = layers.Flatten()(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
        x = layers.Dense(dense, activation="relu")(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name=name)


BASELINE_FILTERS = (16, 32, 64)  # as in the TensorFlow image-classification tutorial


@register(tags=("baseline",))
def baseline(input_shape, **options):
    """Three conv/pool blocks (16-32-64) and a 128-unit dense head."""
    return conv_net(input_shape, BASELINE_FILTERS, **options)


@register(tags=("baseline", "regularized"))
def baseline_dropout(input_shape, dropout=0.5, **options):
    """baseline with dropout 0.5 before and after the dense layer."""
    return conv_net(input_shape, BASELINE_FILTERS, dropout=dropout, **options)


@register(tags=("baseline", "batchnorm"))
def baseline_batchnorm(input_shape, **options):
    """baseline with batch normalisation after every convolution."""
    return conv_net(input_shape, BASELINE_FILTERS, batchnorm=True, **options)


@register(tags=("baseline", "batchnorm", "regularized"))
def baseline_bn_dropout(input_shape, dropout=0.5, **options):
    """baseline with batch normalisation and dropout 0.5."""
    return conv_net(input_shape, BASELINE_FILTERS, batchnorm=True, dropout=dropout, **options)
