"""Depthwise and separable convolutions (MobileNet, EfficientNet, Xception), Keras's arguments
and weight layout: a depthwise kernel (kh, kw, in, depth_multiplier), one filter set per input
channel; a separable conv is a depthwise one then a 1×1 pointwise conv to `filters` channels.
"""
from __future__ import annotations

from cnnkit.layers.base import (
    Layer, _activation, _bool, _explain_window, _initializer, _pair, _padding, _positive_int,
    _window_output)
from cnnkit.layers.dilation import _dilation, dilated, explain_dilation
from cnnkit.layers.registry import register_layer


class _Depthwise(Layer):
    """What DepthwiseConv2D and SeparableConv2D share: the depthwise step's window."""

    def __init__(self, kernel_size, strides, padding, depth_multiplier, dilation_rate,
                 activation, use_bias, depthwise_initializer, name):
        super().__init__(name)
        self.kernel_size = _pair(self, "kernel_size", kernel_size)
        self.strides = _pair(self, "strides", strides)
        self.padding = _padding(self, padding, self.kernel_size)
        self.depth_multiplier = _positive_int(self, "depth_multiplier", depth_multiplier)
        self.dilation_rate = _dilation(self, dilation_rate, self.strides)
        self.activation = _activation(self, activation)
        self.use_bias = _bool(self, "use_bias", use_bias)
        self.depthwise_initializer = _initializer(self, depthwise_initializer)

    def get_config(self):
        cfg = {"kernel_size": list(self.kernel_size), "strides": list(self.strides),
               "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
               "depth_multiplier": self.depth_multiplier,
               "dilation_rate": list(self.dilation_rate), "activation": self.activation,
               "use_bias": self.use_bias}
        if self.depthwise_initializer:
            cfg["depthwise_initializer"] = self.depthwise_initializer
        return cfg

    def _window(self, shape):
        kernel = dilated(self.kernel_size, self.dilation_rate)
        return _window_output(self, shape, kernel, self.strides, self.padding)

    def _depthwise_weights(self, shape) -> int:
        kh, kw = self.kernel_size
        return shape[2] * self.depth_multiplier * kh * kw

    def _explain_window(self, shape, out):
        _, pads = self._window(shape)
        window = dilated(self.kernel_size, self.dilation_rate)
        return explain_dilation(self.kernel_size, self.dilation_rate) + _explain_window(
            shape, out, window, self.strides, pads, self.padding)

    def _init_depthwise(self, conv, shape, init):
        from cnnkit.layers import initializers

        kh, kw = self.kernel_size  # Keras's fans of a (kh, kw, in, multiplier) kernel
        fans = (shape[2] * kh * kw, self.depth_multiplier * kh * kw)
        initializers.initialize(conv, self.depthwise_initializer, init, fans)

    def fused_activation(self):
        return self.activation


@register_layer
class DepthwiseConv2D(_Depthwise):
    base_name = "depthwise_conv2d"

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1,
                 dilation_rate=1, activation=None, use_bias=True, depthwise_initializer=None,
                 name=None):
        super().__init__(kernel_size, strides, padding, depth_multiplier, dilation_rate,
                         activation, use_bias, depthwise_initializer, name)

    def output_shape(self, shape):
        (oh, ow), _ = self._window(shape)
        return oh, ow, shape[2] * self.depth_multiplier

    def params(self, shape):
        return self._depthwise_weights(shape) + int(self.use_bias) * shape[2] * self.depth_multiplier, 0

    def macs(self, shape, out):
        return out[0] * out[1] * self._depthwise_weights(shape)

    def explain(self, shape, out):
        kh, kw = self.kernel_size
        bias = " + 1" if self.use_bias else ""
        return self._explain_window(shape, out) + [
            f"params = in_channels × depth_multiplier × (kh × kw{bias}) = {shape[2]} × "
            f"{self.depth_multiplier} × ({kh} × {kw}{bias}) = {self.params(shape)[0]:,}"]

    def build(self, shape, init):
        from cnnkit.layers import nn as knn

        _, pads = self._window(shape)
        module = knn.DepthwiseConv2d(shape[2], self.depth_multiplier, self.kernel_size,
                                     self.strides, pads, self.use_bias, self.dilation_rate)
        self._init_depthwise(module.depthwise.conv, shape, init)
        return module


@register_layer
class SeparableConv2D(_Depthwise):
    base_name = "separable_conv2d"

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1,
                 depth_multiplier=1, activation=None, use_bias=True, depthwise_initializer=None,
                 pointwise_initializer=None, name=None):
        self.filters = _positive_int(self, "filters", filters)
        super().__init__(kernel_size, strides, padding, depth_multiplier, dilation_rate,
                         activation, use_bias, depthwise_initializer, name)
        self.pointwise_initializer = _initializer(self, pointwise_initializer)

    def get_config(self):
        cfg = {"filters": self.filters, **super().get_config()}
        if self.pointwise_initializer:
            cfg["pointwise_initializer"] = self.pointwise_initializer
        return cfg

    def output_shape(self, shape):
        (oh, ow), _ = self._window(shape)
        return oh, ow, self.filters

    def params(self, shape):
        mid = shape[2] * self.depth_multiplier
        return self._depthwise_weights(shape) + mid * self.filters + int(self.use_bias) * self.filters, 0

    def macs(self, shape, out):
        mid = shape[2] * self.depth_multiplier
        return out[0] * out[1] * (self._depthwise_weights(shape) + mid * self.filters)

    def explain(self, shape, out):
        kh, kw = self.kernel_size
        mid = shape[2] * self.depth_multiplier
        bias, plus = (" + filters", f" + {self.filters}") if self.use_bias else ("", "")
        return self._explain_window(shape, out) + [
            f"params = in_channels × depth_multiplier × (kh × kw + filters){bias} = {shape[2]} × "
            f"{self.depth_multiplier} × ({kh} × {kw} + {self.filters}){plus} = "
            f"{self.params(shape)[0]:,}   (depthwise {mid} × {kh} × {kw}, pointwise "
            f"{mid} × {self.filters})"]

    def build(self, shape, init):
        from cnnkit.layers import initializers, nn as knn

        _, pads = self._window(shape)
        module = knn.SeparableConv2d(shape[2], self.depth_multiplier, self.filters,
                                     self.kernel_size, self.strides, pads, self.use_bias,
                                     self.dilation_rate)
        self._init_depthwise(module.depthwise.conv, shape, init)
        initializers.initialize(module.pointwise, self.pointwise_initializer, init)
        return module
