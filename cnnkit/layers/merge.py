"""Merge layers: several inputs, one output (residual Add, squeeze-excitation Multiply,
Concatenate), for graph models. `merges = True` tells a model so: `output_shape`, `params`,
`macs`, `explain` and `build` take a list of input shapes (Keras's, without the batch axis),
and the built module's `forward(*xs)` takes the input tensors in that order.
"""
from __future__ import annotations

from cnnkit.layers.base import Layer, _fmt
from cnnkit.layers.registry import register_layer
from cnnkit.errors import clipped


class _Merge(Layer):
    merges = True
    op = ""  # the element-wise operation, nn.Merge's name for it
    inputs = (1, None)  # how many inputs it takes: at least, at most (None: any number)

    def _shapes(self, shapes) -> list[tuple]:
        """The input shapes as tuples, their number checked."""
        if not isinstance(shapes, (list, tuple)) or not all(isinstance(s, (list, tuple))
                                                             for s in shapes):
            raise self._error(f"merges several inputs, so it belongs in a graph model, not a "
                              f"Sequential (which gives each layer one input); received the "
                              f"input shape {clipped(shapes)}")
        low, high = self.inputs
        if len(shapes) < low or (high is not None and len(shapes) > high):
            count = f"exactly {low}" if low == high else f"at least {low}"
            raise self._error(f"takes {count} inputs; received {len(shapes)}: "
                              f"{', '.join(_fmt(s) for s in shapes)}")
        return [tuple(s) for s in shapes]

    def output_shape(self, shapes):
        """Keras's element-wise rule: equal shapes, where a size-1 axis takes the other's size
        ((1, 1, C) times (H, W, C) is (H, W, C), as squeeze-excitation multiplies)."""
        shapes = self._shapes(shapes)
        out = shapes[0]
        for shape in shapes[1:]:
            if len(shape) != len(out) or any(a != b and 1 not in (a, b) for a, b in zip(out, shape)):
                raise self._error(f"inputs of shapes {', '.join(_fmt(s) for s in shapes)} do not "
                                  "match; valid: shapes of one rank, equal on each axis or 1 "
                                  "on one side")
            out = tuple(max(a, b) for a, b in zip(out, shape))
        return out

    def params(self, shapes):
        return 0, 0

    def explain(self, shapes, out):
        return [f"{self.op} of {len(shapes)} inputs "
                f"({', '.join(_fmt(s) for s in shapes)}) → {_fmt(out)}; no parameters"]

    def build(self, shapes, init):
        from cnnkit.layers import nn as knn

        self.output_shape(shapes)
        return knn.Merge(self.op)


@register_layer
class Add(_Merge):
    op = "add"


@register_layer
class Subtract(_Merge):
    op, inputs = "subtract", (2, 2)


@register_layer
class Multiply(_Merge):
    op = "multiply"


@register_layer
class Average(_Merge):
    op = "average"


@register_layer
class Maximum(_Merge):
    op = "maximum"


@register_layer
class Minimum(_Merge):
    op = "minimum"


@register_layer
class Concatenate(_Merge):
    op = "concatenation"

    def __init__(self, axis=-1, name=None):
        super().__init__(name)
        if isinstance(axis, bool) or not isinstance(axis, int) or axis == 0:
            raise self._error(f"axis must be a non-zero integer (Keras's axes, batch first: -1 is "
                              f"the last, channels for images); received axis={clipped(axis)}")
        self.axis = axis

    def get_config(self):
        return {"axis": self.axis}

    def _axis(self, rank: int) -> int:
        """Keras's axis as an index into a shape without the batch axis."""
        axis = self.axis if self.axis < 0 else self.axis - 1
        if not -rank <= axis < rank:
            raise self._error(f"axis={self.axis} is out of range for inputs of rank {rank + 1} "
                              f"(batch included); valid: 1 to {rank} or -1 to -{rank}")
        return axis % rank

    def output_shape(self, shapes):
        shapes = self._shapes(shapes)
        rank = len(shapes[0])
        axis = self._axis(rank)
        if any(len(s) != rank or s[:axis] + s[axis + 1:] != shapes[0][:axis] + shapes[0][axis + 1:]
               for s in shapes):
            raise self._error(f"inputs of shapes {', '.join(_fmt(s) for s in shapes)} cannot be "
                              f"joined on axis {self.axis}; valid: equal shapes but on that axis")
        return shapes[0][:axis] + (sum(s[axis] for s in shapes),) + shapes[0][axis + 1:]

    def build(self, shapes, init):
        from cnnkit.layers import nn as knn

        self.output_shape(shapes)
        axis = self._axis(len(shapes[0]))
        # images are (H, W, C) to Keras, (C, H, W) to torch; other tensors share one layout
        dim = (1, 2, 0)[axis] + 1 if len(shapes[0]) == 3 else axis + 1
        return knn.Concatenate(dim)
