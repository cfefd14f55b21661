"""The candidate architectures measured for issue 7 (docs/results.md), as an --arch-module file.

    benchmark run --folds 5 --arch-module docs/experiments/issue7.py --archs c_resnet,c_pyramid_bn_gap

``c_pyramid_bn_gap`` won the cross-validation at the default settings and is
registered as ``pyramid_bn_gap``; the others stay here so that every row of the
results table can be rerun.
"""

import keras
from keras import layers

from architectures import register
from architectures.baseline import BN_MOMENTUM, conv_net
from architectures.pyramid import pyramid_bn_gap

PYRAMID = (16, 32, 64, 128)


def conv_bn(x, filters, strides=1):
    """3×3 convolution (no bias: batch norm's beta replaces it) and batch norm."""
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
    return layers.BatchNormalization(momentum=BN_MOMENTUM)(x)


def residual_block(x, filters, strides=1):
    """Two 3×3 convolutions plus the input (He et al. 2016); a 1×1 projection where the shape changes."""
    shortcut = x
    x = layers.Activation("relu")(conv_bn(x, filters, strides))
    x = conv_bn(x, filters)
    if strides != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False)(shortcut)
        shortcut = layers.BatchNormalization(momentum=BN_MOMENTUM)(shortcut)
    return layers.Activation("relu")(layers.Add()([x, shortcut]))


@register("c_resnet", tags=("issue7", "residual"), description="ResNet-10-style: stem, 4 basic blocks 16-128, GAP.")
def c_resnet(input_shape):
    inputs = keras.Input(shape=input_shape)
    x = layers.Activation("relu")(conv_bn(inputs, PYRAMID[0]))
    x = layers.MaxPooling2D()(x)
    for i, filters in enumerate(PYRAMID):
        x = residual_block(x, filters, strides=1 if i == 0 else 2)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    return keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x), name="c_resnet")


@register(
    "c_mobilenet", tags=("issue7", "separable"), description="keras.applications MobileNetV2, α 0.35, no weights."
)
def c_mobilenet(input_shape):
    base = keras.applications.MobileNetV2(
        input_shape=input_shape, alpha=0.35, include_top=False, weights=None, pooling="avg"
    )
    for layer in base.layers:  # its 0.999 momentum lags for hundreds of steps (see baseline.BN_MOMENTUM)
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    inputs = keras.Input(shape=input_shape)
    x = layers.Dropout(0.3)(base(inputs))
    return keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x), name="c_mobilenet")


@register("c_pyramid_gap", tags=("issue7", "gap"), description="pyramid_up with a GAP head, no batch norm.")
def c_pyramid_gap(input_shape):
    return conv_net(input_shape, PYRAMID, dropout=0.3, head="gap", name="c_pyramid_gap")


# The winner, under its candidate name so that the table's commands run unchanged.
c_pyramid_bn_gap = register("c_pyramid_bn_gap", tags=("issue7", "gap"), description="= the registry's pyramid_bn_gap.")(
    pyramid_bn_gap
)


def standardised(build, name):
    """``build`` behind per-image standardisation: each image to zero mean and unit variance."""

    def builder(input_shape):
        inner = build(input_shape)
        inputs = keras.Input(shape=input_shape)
        x = layers.LayerNormalization(axis=(1, 2, 3), center=False, scale=False)(inputs)
        return keras.Model(inputs, inner(x), name=name)

    return builder


register("c_resnet_std", tags=("issue7",), description="c_resnet on per-image standardised pixels.")(
    standardised(c_resnet, "c_resnet_std")
)
register("c_pyramid_bn_gap_std", tags=("issue7",), description="c_pyramid_bn_gap on per-image standardised pixels.")(
    standardised(c_pyramid_bn_gap, "c_pyramid_bn_gap_std")
)
