"""Filter pyramids: does the network want more filters early or late?"""

from architectures import register
from architectures.baseline import conv_net


@register(tags=("pyramid",))
def pyramid_up(input_shape, dropout=0.3, **options):
    """Four conv/pool blocks whose filters rise 16-32-64-128 (cheap early, wide late)."""
    return conv_net(input_shape, (16, 32, 64, 128), dropout=dropout, **options)


@register(tags=("pyramid",))
def pyramid_down(input_shape, dropout=0.3, **options):
    """Four conv/pool blocks whose filters fall 128-64-32-16 (wide at full resolution)."""
    return conv_net(input_shape, (128, 64, 32, 16), dropout=dropout, **options)


@register(tags=("pyramid", "batchnorm", "gap"))
def pyramid_bn_gap(input_shape, dropout=0.3, **options):
    """pyramid_up with batch norm and a global-average-pooling head instead of flatten + dense."""
    return conv_net(input_shape, (16, 32, 64, 128), batchnorm=True, dropout=dropout, head="gap", **options)
