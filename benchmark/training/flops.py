"""A model's forward cost in floating-point operations, counted from its layers (for ``benchmark list``
and the performance scripts).

Two FLOPs per multiply-add of the convolutions and dense layers, the operations that dominate a CNN;
batch norm, activations and pooling are left out. Training costs about three times the forward pass.
"""

from __future__ import annotations

import math


def forward_flops(model) -> float:
    """FLOPs of one image through ``model``, nested models included.

    >>> import keras
    >>> inputs = keras.Input((8, 8, 1))
    >>> x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    >>> outputs = keras.layers.Dense(1)(keras.layers.Flatten()(x))
    >>> forward_flops(keras.Model(inputs, outputs))  # 2·9·1·4·64 + 2·256
    5120.0
    """
    import keras
    from keras import layers

    total = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += forward_flops(layer)
        elif isinstance(layer, layers.Dense):  # on a feature map (ConvNeXt), once per position
            total += 2 * layer.input.shape[-1] * layer.units * math.prod(layer.output.shape[1:-1])
        elif isinstance(layer, (layers.Conv2D, layers.SeparableConv2D, layers.DepthwiseConv2D)):
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            h, w, cout = layer.output.shape[1:]
            groups = getattr(layer, "groups", 1) or 1
            if isinstance(layer, layers.SeparableConv2D):
                total += 2 * kh * kw * cin * h * w + 2 * cin * cout * h * w
            elif isinstance(layer, layers.DepthwiseConv2D):
                total += 2 * kh * kw * cin * h * w * getattr(layer, "depth_multiplier", 1)
            else:
                total += 2 * kh * kw * (cin // groups) * cout * h * w
    return float(total)
