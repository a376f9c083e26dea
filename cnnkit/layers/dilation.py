"""Dilated kernels (Conv2D, DepthwiseConv2D, SeparableConv2D's dilation_rate): a kernel with
gaps of d - 1 pixels spans d·(k - 1) + 1 pixels, and Keras's 'same' padding and output sizes are
those of an undilated kernel that size. Pure Python."""
from __future__ import annotations

from cnnkit.layers.base import Layer, _pair


def _dilation(layer: Layer, value, strides) -> tuple[int, int]:
    rate = _pair(layer, "dilation_rate", value)
    if rate != (1, 1) and strides != (1, 1):  # as Keras refuses it
        raise layer._error(f"strides > 1 cannot be combined with dilation_rate > 1; received "
                           f"strides={strides} and dilation_rate={rate}")
    return rate


def dilated(kernel, rate) -> tuple[int, int]:
    """The window a dilated kernel spans, d·(k - 1) + 1: Keras's 'same' padding and the output
    size are those of an undilated kernel this size."""
    return tuple(d * (k - 1) + 1 for k, d in zip(kernel, rate))


def explain_dilation(kernel, rate) -> list[str]:
    if rate == (1, 1):
        return []
    window = dilated(kernel, rate)
    return [f"dilated kernel K = d·(k - 1) + 1 = ({rate[0]}·({kernel[0]} - 1) + 1, "
            f"{rate[1]}·({kernel[1]} - 1) + 1) = ({window[0]}, {window[1]})"]
