"""Filter pyramids: does the network want more filters early or late?"""

from architectures import register
from architectures.baseline import conv_net


@register(
    "pyramid_up",
    tags=("pyramid",),
    description="Four conv/pool blocks whose filters rise 16-32-64-128 (cheap early, wide late).",
)
def pyramid_up(input_shape):
    return conv_net(input_shape, (16, 32, 64, 128), dropout=0.3, name="pyramid_up")


@register(
    "pyramid_down",
    tags=("pyramid",),
    description="Four conv/pool blocks whose filters fall 128-64-32-16 (wide at full resolution).",
)
def pyramid_down(input_shape):
    return conv_net(input_shape, (128, 64, 32, 16), dropout=0.3, name="pyramid_down")


@register(
    "pyramid_bn_gap",
    tags=("pyramid", "batchnorm", "gap"),
    description="pyramid_up with batch norm and a global-average-pooling head instead of flatten + dense.",
)
def pyramid_bn_gap(input_shape):
    return conv_net(input_shape, (16, 32, 64, 128), batchnorm=True, dropout=0.3, head="gap", name="pyramid_bn_gap")
