"""Depthwise-separable blocks with batch norm and dropout, after the keras-io
example "Pneumonia Classification on TPU" (Amy MiHyun Jang)."""

import keras
from keras import layers

from architectures import register
from architectures.baseline import BN_MOMENTUM


def separable_block(x, filters):
    x = layers.SeparableConv2D(filters, 3, activation="relu", padding="same")(x)
    x = layers.SeparableConv2D(filters, 3, activation="relu", padding="same")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    return layers.MaxPooling2D()(x)


def dense_block(x, units, dropout):
    x = layers.Dense(units, activation="relu")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    return layers.Dropout(dropout)(x)


@register(tags=("separable", "batchnorm", "regularized"))
def separable(input_shape):
    """Two plain convs, four separable-conv blocks (32-64-128-256) with BN/dropout, dense head 512-128-64."""
    inputs = keras.Input(shape=input_shape)
    x = layers.Conv2D(16, 3, activation="relu", padding="same")(inputs)
    x = layers.Conv2D(16, 3, activation="relu", padding="same")(x)
    x = layers.MaxPooling2D()(x)
    x = separable_block(x, 32)
    x = separable_block(x, 64)
    x = separable_block(x, 128)
    x = layers.Dropout(0.2)(x)
    x = separable_block(x, 256)
    x = layers.Dropout(0.2)(x)
    x = layers.Flatten()(x)
    x = dense_block(x, 512, 0.7)
    x = dense_block(x, 128, 0.5)
    x = dense_block(x, 64, 0.3)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs)
