"""Layer specs, the Keras way: validated arguments, shape inference, parameter counts, MACs,
the arithmetic behind each summary row, and the PyTorch module that computes it.

Shapes here are Keras's, without the batch axis: (H, W, C) for images, (D,) for vectors.
"""
from __future__ import annotations

import math

from cnnkit.layers.base import (  # noqa: F401  (Input, Shape and the padding helpers: public here too)
    ACTIVATIONS, INITIALIZERS, Layer, Shape, _activation, _bool, _explain_window,
    _initializer, _l2, _pair, _padding, _positive_int, _real, _spatial, _window_output,
    check_input_shape, clipped, resolve_padding, same_padding)
from cnnkit.layers.symbolic import Input, InputLayer  # noqa: F401
# the registry lives in registry.py (new layer modules register there without importing this one)
from cnnkit.layers.registry import (  # noqa: F401  (public here too, as before)
    LAYER_TYPES, layer_from_config, layer_to_config, register_layer)
from cnnkit.layers.dilation import _dilation, dilated, explain_dilation


# -- layers -------------------------------------------------------------------------------------
class _NoWeights(Layer):
    """A layer without weights: counted as such, without building a module (no torch)."""

    def params(self, shape):
        return 0, 0


class Conv2D(Layer):
    base_name = "conv2d"

    def __init__(self, filters, kernel_size, strides=1, padding="valid", activation=None,
                 use_bias=True, kernel_initializer=None, kernel_regularizer=None,
                 dilation_rate=1, groups=1, name=None):
        super().__init__(name)
        self.filters = _positive_int(self, "filters", filters)
        self.kernel_size = _pair(self, "kernel_size", kernel_size)
        self.strides = _pair(self, "strides", strides)
        self.padding = _padding(self, padding, self.kernel_size)
        self.activation = _activation(self, activation)
        self.use_bias = _bool(self, "use_bias", use_bias)
        self.kernel_initializer = _initializer(self, kernel_initializer)
        self.kernel_regularizer = _l2(self, kernel_regularizer)
        self.dilation_rate = _dilation(self, dilation_rate, self.strides)
        self.groups = _positive_int(self, "groups", groups)
        if self.filters % self.groups:
            raise self._error(f"filters={self.filters} must be a multiple of groups={self.groups}")

    def get_config(self):
        cfg = {"filters": self.filters, "kernel_size": list(self.kernel_size),
               "strides": list(self.strides),
               "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
               "activation": self.activation, "use_bias": self.use_bias}
        if self.kernel_initializer:
            cfg["kernel_initializer"] = self.kernel_initializer
        if self.kernel_regularizer:
            cfg["kernel_regularizer"] = {"l2": self.kernel_regularizer}
        if self.dilation_rate != (1, 1) or self.groups != 1:  # older configs stay as they were
            cfg.update(dilation_rate=list(self.dilation_rate), groups=self.groups)
        return cfg

    def _window(self, shape):
        kernel = dilated(self.kernel_size, self.dilation_rate)
        return _window_output(self, shape, kernel, self.strides, self.padding)

    def output_shape(self, shape):
        (oh, ow), _ = self._window(shape)
        if shape[2] % self.groups:
            raise self._error(f"input channels {shape[2]} (input shape {shape}) must be a "
                              f"multiple of groups={self.groups}")
        return oh, ow, self.filters

    def params(self, shape):
        kh, kw = self.kernel_size
        return self.filters * (shape[2] // self.groups * kh * kw + int(self.use_bias)), 0

    def macs(self, shape, out):
        kh, kw = self.kernel_size
        return out[0] * out[1] * self.filters * shape[2] // self.groups * kh * kw

    def explain(self, shape, out):
        (oh, ow), pads = self._window(shape)
        kh, kw = self.kernel_size
        bias = " + 1" if self.use_bias else ""
        per = f"{shape[2]} / {self.groups}" if self.groups > 1 else f"{shape[2]}"
        window = dilated(self.kernel_size, self.dilation_rate)
        return explain_dilation(self.kernel_size, self.dilation_rate) + _explain_window(
            shape, out, window, self.strides, pads, self.padding) + [
            f"params = filters × (in_channels{' / groups' if self.groups > 1 else ''} × kh × kw"
            f"{bias}) = {self.filters} × ({per} × {kh} × {kw}{bias}) = {self.params(shape)[0]:,}"]

    def build(self, shape, init):
        from cnnkit.layers import initializers, nn as knn

        _, pads = self._window(shape)
        conv = knn.Conv2d(shape[2], self.filters, self.kernel_size, self.strides, pads,
                          self.use_bias, self.dilation_rate, self.groups)
        initializers.initialize(conv.conv, self.kernel_initializer, init)
        return conv

    def fused_activation(self):
        return self.activation

    def l2(self):
        return self.kernel_regularizer


class _Pooling2D(_NoWeights):

    def __init__(self, pool_size=2, strides=None, padding="valid", name=None):
        super().__init__(name)
        self.pool_size = _pair(self, "pool_size", pool_size)
        self.strides = self.pool_size if strides is None else _pair(self, "strides", strides)
        self.padding = _padding(self, padding, self.pool_size)
        if isinstance(self.padding, tuple) and any(
                p > k // 2 for p, k in zip(self.padding, self.pool_size)):
            raise self._error(f"padding {self.padding} must be at most half the pool size "
                              f"{self.pool_size}, as in PyTorch")

    def get_config(self):
        return {"pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding if isinstance(self.padding, str) else list(self.padding)}

    def _window(self, shape):
        return _window_output(self, shape, self.pool_size, self.strides, self.padding)

    def output_shape(self, shape):
        (oh, ow), _ = self._window(shape)
        return oh, ow, shape[2]

    def explain(self, shape, out):
        _, pads = self._window(shape)
        return _explain_window(shape, out, self.pool_size, self.strides, pads, self.padding) + [
            f"channels unchanged ({shape[2]}); no parameters"]


class MaxPooling2D(_Pooling2D):
    base_name = "max_pooling2d"

    def build(self, shape, init):
        from cnnkit.layers import nn as knn

        return knn.MaxPool2d(self.pool_size, self.strides, self._window(shape)[1])


class AveragePooling2D(_Pooling2D):
    base_name = "average_pooling2d"

    def build(self, shape, init):
        from cnnkit.layers import nn as knn

        count_pad = not isinstance(self.padding, str)  # PyTorch's explicit padding counts zeros
        return knn.AvgPool2d(self.pool_size, self.strides, self._window(shape)[1], count_pad)


class ZeroPadding2D(_NoWeights):
    base_name = "zero_padding2d"

    def __init__(self, padding=1, name=None):
        super().__init__(name)
        if (isinstance(padding, (list, tuple)) and len(padding) == 2
                and all(isinstance(p, (list, tuple)) for p in padding)):
            (t, b), (left, r) = (_pair(self, "padding", p, minimum=0) for p in padding)
        else:
            (t, left) = _pair(self, "padding", padding, minimum=0)
            b, r = t, left
        self.pads = (t, b, left, r)

    def get_config(self):
        t, b, left, r = self.pads
        return {"padding": [[t, b], [left, r]]}

    def output_shape(self, shape):
        h, w, c = _spatial(self, shape)
        t, b, left, r = self.pads
        return h + t + b, w + left + r, c

    def explain(self, shape, out):
        t, b, left, r = self.pads
        return [f"H: {shape[0]} + {t} + {b} = {out[0]};  W: {shape[1]} + {left} + {r} = {out[1]}; "
                "no parameters"]

    def build(self, shape, init):
        from cnnkit.layers import nn as knn

        return knn.ZeroPad2d(self.pads)


class Flatten(_NoWeights):
    base_name = "flatten"

    def output_shape(self, shape):
        return (math.prod(shape),)

    def explain(self, shape, out):
        return [f"{' × '.join(map(str, shape))} = {out[0]:,} values in one vector; no parameters"]

    def build(self, shape, init):
        from cnnkit.layers import nn as knn

        return knn.Flatten() if len(shape) > 1 else None  # already a vector


class GlobalAveragePooling2D(_NoWeights):
    base_name = "global_average_pooling2d"

    def __init__(self, keepdims=False, name=None):
        super().__init__(name)
        self.keepdims = _bool(self, "keepdims", keepdims)

    def get_config(self):
        return {"keepdims": True} if self.keepdims else {}  # older configs stay as they were

    def output_shape(self, shape):
        c = _spatial(self, shape)[2]
        return (1, 1, c) if self.keepdims else (c,)

    def explain(self, shape, out):
        return [f"mean over {shape[0]} × {shape[1]} positions per channel → {out[-1]} values; "
                "no parameters"]

    def build(self, shape, init):
        from cnnkit.layers import nn as knn

        return knn.GlobalAvgPool2d(self.keepdims)


class Dense(Layer):
    base_name = "dense"

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer=None,
                 kernel_regularizer=None, name=None):
        super().__init__(name)
        self.units = _positive_int(self, "units", units)
        self.activation = _activation(self, activation)
        self.use_bias = _bool(self, "use_bias", use_bias)
        self.kernel_initializer = _initializer(self, kernel_initializer)
        self.kernel_regularizer = _l2(self, kernel_regularizer)

    def get_config(self):
        cfg = {"units": self.units, "activation": self.activation, "use_bias": self.use_bias}
        if self.kernel_initializer:
            cfg["kernel_initializer"] = self.kernel_initializer
        if self.kernel_regularizer:
            cfg["kernel_regularizer"] = {"l2": self.kernel_regularizer}
        return cfg

    def output_shape(self, shape):
        return shape[:-1] + (self.units,)  # Keras: acts on the last axis

    def params(self, shape):
        return self.units * (shape[-1] + int(self.use_bias)), 0

    def macs(self, shape, out):
        return math.prod(shape) * self.units

    def explain(self, shape, out):
        bias = " + 1" if self.use_bias else ""
        where = "" if len(shape) == 1 else f" (applied at each of {math.prod(shape[:-1])} positions)"
        return [f"params = units × (inputs{bias}) = {self.units} × ({shape[-1]:,}{bias}) = "
                f"{self.params(shape)[0]:,}{where}"]

    def build(self, shape, init):
        from cnnkit.layers import initializers, nn as knn

        dense = knn.Dense(shape[-1], self.units, self.use_bias)
        initializers.initialize(dense.linear, self.kernel_initializer, init)
        return dense

    def fused_activation(self):
        return self.activation

    def l2(self):
        return self.kernel_regularizer


class Dropout(_NoWeights):
    base_name = "dropout"

    def __init__(self, rate, noise_shape=None, name=None):
        super().__init__(name)
        self.rate = _real(self, "rate", rate, lambda r: 0 <= r < 1, "a number in [0, 1)")
        self.noise_shape = None if noise_shape is None else _noise_shape(self, noise_shape)

    def get_config(self):
        cfg = {"rate": self.rate}
        if self.noise_shape is not None:
            cfg["noise_shape"] = list(self.noise_shape)
        return cfg

    def output_shape(self, shape):
        noise = self.noise_shape
        if noise is not None and (len(noise) != len(shape) + 1 or any(
                n not in (None, 1, s) for n, s in zip(noise, (None,) + tuple(shape)))):
            raise self._error(f"noise_shape {noise} does not fit its input (batch, "
                              f"{', '.join(map(str, shape))}); valid: one entry per axis, batch "
                              "first, each None, 1 or the axis's size")
        return shape

    def explain(self, shape, out):
        return [f"training: zeroes each value with probability {self.rate} and scales the rest by "
                f"1/(1 - {self.rate}); inference: identity; no parameters"]

    def build(self, shape, init):
        from torch import nn

        from cnnkit.layers import nn as knn

        if self.noise_shape is None:
            return nn.Dropout(self.rate)
        return knn.NoiseDropout(self.rate, self.noise_shape)


def _noise_shape(layer, value) -> tuple:
    """Keras's noise_shape, batch axis first: (None, 1, 1, 1) drops whole images."""
    if not isinstance(value, (list, tuple)) or not value or any(
            v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1) for v in value):
        raise layer._error(f"noise_shape must be a list of positive integers or None, batch axis "
                           f"first, like (None, 1, 1, 1); received noise_shape={clipped(value)}")
    return tuple(value)


class BatchNormalization(Layer):
    base_name = "batch_normalization"

    def __init__(self, momentum=0.99, epsilon=0.001, name=None):
        super().__init__(name)
        self.momentum = _real(self, "momentum", momentum, lambda m: 0 <= m < 1, "a number in [0, 1)")
        self.epsilon = _real(self, "epsilon", epsilon, lambda e: e > 0, "a number > 0")

    def get_config(self):
        return {"momentum": self.momentum, "epsilon": self.epsilon}

    def params(self, shape):
        return 2 * shape[-1], 2 * shape[-1]

    def explain(self, shape, out):
        c = shape[-1]
        return [f"params = 4 × channels = 4 × {c} = {4 * c}: gamma and beta trainable ({2 * c}), "
                f"moving mean and variance not ({2 * c})"]

    def build(self, shape, init):
        from torch import nn

        # Keras's momentum weighs the old statistic; PyTorch's weighs the new one.
        cls = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
        return cls(shape[-1], eps=self.epsilon, momentum=1.0 - self.momentum)


class Activation(_NoWeights):
    base_name = "activation"

    def __init__(self, activation, name=None):
        super().__init__(name)
        self.activation = _activation(self, activation)

    def get_config(self):
        return {"activation": self.activation}

    def explain(self, shape, out):
        return [f"{self.activation} applied to each value; no parameters"]

    def build(self, shape, init):
        from cnnkit.layers import nn as knn

        return knn.activation_module(self.activation)


class LeakyReLU(_NoWeights):
    base_name = "leaky_re_lu"

    def __init__(self, negative_slope=0.01, name=None):
        super().__init__(name)
        self.negative_slope = _real(self, "negative_slope", negative_slope, lambda s: s >= 0,
                                    "a number >= 0")

    def get_config(self):
        return {"negative_slope": self.negative_slope}

    def explain(self, shape, out):
        return [f"max(x, {self.negative_slope}·x) for each value; no parameters"]

    def build(self, shape, init):
        from cnnkit.layers import nn as knn

        return knn.activation_module("leaky_relu", self.negative_slope)


# -- registered, so model files name them ---------------------------------------------------
for _cls in (Conv2D, MaxPooling2D, AveragePooling2D, ZeroPadding2D, Flatten, GlobalAveragePooling2D,
             Dense, Dropout, BatchNormalization, Activation, LeakyReLU, InputLayer):
    register_layer(_cls)
