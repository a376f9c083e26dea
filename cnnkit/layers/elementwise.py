"""Layers acting value by value or channel by channel: Keras's ReLU layer (MobileNetV2's
ReLU(6.0)) and SpatialDropout2D.
"""
from __future__ import annotations

from cnnkit.layers.base import Layer, _real, _spatial
from cnnkit.layers.registry import register_layer


@register_layer
class ReLU(Layer):
    """max(x, 0), capped at `max_value`, with `negative_slope` · (x - threshold) below the
    threshold: Keras's ReLU layer. (A model saved with Activation('relu') stays that.)"""

    base_name = "re_lu"

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, name=None):
        super().__init__(name)
        self.max_value = None if max_value is None else _real(
            self, "max_value", max_value, lambda v: v >= 0, "None or a number >= 0")
        self.negative_slope = _real(self, "negative_slope", negative_slope, lambda v: v >= 0,
                                    "a number >= 0")
        self.threshold = _real(self, "threshold", threshold, lambda v: v >= 0, "a number >= 0")

    def get_config(self):
        return {"max_value": self.max_value, "negative_slope": self.negative_slope,
                "threshold": self.threshold}

    def params(self, shape):
        return 0, 0

    def explain(self, shape, out):
        cap = "" if self.max_value is None else f", capped at {self.max_value}"
        below = (f"; {self.negative_slope}·(x - {self.threshold}) below {self.threshold}"
                 if self.negative_slope else f"; 0 at or below {self.threshold}")
        return [f"x above {self.threshold}{cap}{below}; no parameters"]

    def build(self, shape, init):
        from torch import nn

        from cnnkit.layers import nn as knn

        # torch's own modules where they compute the same (batch norm + ReLU runs fused)
        if self.negative_slope == 0 and self.threshold == 0 and self.max_value in (None, 6.0):
            return nn.ReLU() if self.max_value is None else nn.ReLU6()
        return knn.ReLU(self.max_value, self.negative_slope, self.threshold)


@register_layer
class SpatialDropout2D(Layer):
    """Dropout of whole channels (feature maps): Keras's noise shape (batch, 1, 1, channels)."""

    base_name = "spatial_dropout2d"

    def __init__(self, rate, name=None):
        super().__init__(name)
        self.rate = _real(self, "rate", rate, lambda r: 0 <= r < 1, "a number in [0, 1)")

    def get_config(self):
        return {"rate": self.rate}

    def output_shape(self, shape):
        return _spatial(self, shape)

    def params(self, shape):
        return 0, 0

    def explain(self, shape, out):
        return [f"training: zeroes each of the {shape[2]} channels with probability {self.rate} "
                f"and scales the rest by 1/(1 - {self.rate}); inference: identity; no parameters"]

    def build(self, shape, init):
        from torch import nn

        return nn.Dropout2d(self.rate)
