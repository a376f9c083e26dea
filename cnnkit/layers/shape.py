"""Layers that change a tensor's shape without weights: Reshape (as EfficientNet's
squeeze-excitation makes (C,) into (1, 1, C)) and GlobalMaxPooling2D.
"""
from __future__ import annotations

import math

from cnnkit.layers.base import Layer, _bool, _fmt, _spatial
from cnnkit.layers.registry import register_layer
from cnnkit.errors import clipped


@register_layer
class Reshape(Layer):
    base_name = "reshape"

    def __init__(self, target_shape, name=None):
        super().__init__(name)
        ok = isinstance(target_shape, (list, tuple)) and target_shape and all(
            isinstance(s, int) and not isinstance(s, bool) and (s > 0 or s == -1)
            for s in target_shape)
        if not ok or list(target_shape).count(-1) > 1:
            raise self._error(f"target_shape must be a list of positive integers, at most one of "
                              f"them -1 (inferred), without the batch axis; received "
                              f"target_shape={clipped(target_shape)}")
        self.target_shape = tuple(target_shape)

    def get_config(self):
        return {"target_shape": list(self.target_shape)}

    def output_shape(self, shape):
        total, known = math.prod(shape), math.prod(s for s in self.target_shape if s != -1)
        out = tuple(total // known if s == -1 else s for s in self.target_shape)
        if math.prod(out) != total:
            raise self._error(f"cannot reshape {_fmt(shape)} ({total:,} values) to "
                              f"{_fmt(self.target_shape)}; valid: a shape of {total:,} values")
        return out

    def params(self, shape):
        return 0, 0

    def explain(self, shape, out):
        return [f"{_fmt(shape)} → {_fmt(out)}, values in Keras's (H, W, C) order; no parameters"]

    def build(self, shape, init):
        from cnnkit.layers import nn as knn

        return knn.Reshape(self.output_shape(shape))


@register_layer
class GlobalMaxPooling2D(Layer):
    base_name = "global_max_pooling2d"

    def __init__(self, keepdims=False, name=None):
        super().__init__(name)
        self.keepdims = _bool(self, "keepdims", keepdims)

    def get_config(self):
        return {"keepdims": self.keepdims}

    def output_shape(self, shape):
        c = _spatial(self, shape)[2]
        return (1, 1, c) if self.keepdims else (c,)

    def params(self, shape):
        return 0, 0

    def explain(self, shape, out):
        return [f"max over {shape[0]} × {shape[1]} positions per channel → {out[-1]} values; "
                "no parameters"]

    def build(self, shape, init):
        from cnnkit.layers import nn as knn

        return knn.GlobalMaxPool2d(self.keepdims)
