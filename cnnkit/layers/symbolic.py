"""The functional API's symbols: `Input(shape)` and what layers called on it return.

A `Tensor` stands for a layer's output in a graph that is not built yet: it knows its layer,
the tensors that layer was called on, and its shape (Keras's, without the batch axis), which
is inferred at the call, so a layer that does not fit fails at the line that calls it. A
graph model (cnnkit.model.graph) is traced from these. Pure Python: no torch here.
"""
from __future__ import annotations

import itertools
from typing import ClassVar

from cnnkit.errors import CnnkitError, clipped
from cnnkit.layers.base import Layer, Shape, check_output_size

_ORDER = itertools.count()  # creation order: a topological order of every graph traced


class Tensor:
    """A symbolic output: `layer` called on `inbound` gives `shape` (no batch axis)."""

    result_type: ClassVar[type] = None  # what layers called on it return (None: Tensor)

    def __init__(self, layer: Layer, inbound: tuple = (), shape: Shape = ()):
        self.layer, self.inbound, self._shape = layer, tuple(inbound), tuple(shape)
        self.order = next(_ORDER)

    @property
    def shape(self) -> Shape:
        return self._shape

    def __repr__(self):
        return f"<{type(self).__name__} shape={self.shape} from {self.layer.type}>"


class InputLayer(Layer):
    """The graph's entry: no weights, its output is the image (H, W, C) or vector (D,)."""

    base_name: ClassVar[str] = "input_layer"

    def __init__(self, shape, name=None):
        super().__init__(name)
        self.shape = check_graph_input(shape, self)

    def get_config(self):
        return {"shape": list(self.shape)}

    def output_shape(self, shape):
        return self.shape

    def params(self, shape):
        return 0, 0

    def explain(self, shape, out):
        return [f"the input: {out} per image; no parameters"]

    def build(self, shape, init):
        return None


def check_graph_input(shape, layer=None) -> Shape:
    """An image (H, W, C) or a vector (D,) of positive integers; (H, W) is a grayscale image
    without its channel axis (as keras.datasets.mnist gives them): (H, W, 1)."""
    from cnnkit.layers.base import check_input_shape

    if isinstance(shape, (list, tuple)) and len(shape) == 2:
        shape = tuple(shape) + (1,)
    if isinstance(shape, (list, tuple)) and len(shape) == 1:
        if isinstance(shape[0], bool) or not isinstance(shape[0], int) or shape[0] <= 0:
            raise CnnkitError(f"input shape {clipped(shape)}: valid: (features,) with a "
                              "positive integer, or (height, width, channels)")
        return (int(shape[0]),)
    return check_input_shape(shape)


class Input(Tensor):
    """`Input((H, W, C))`, as `keras.Input`: the start of a graph (call layers on it) or the
    first entry of a Sequential, which takes its shape."""

    def __init__(self, shape, name=None):
        layer = InputLayer(shape, name)
        super().__init__(layer, (), layer.shape)


def call(layer: Layer, inputs) -> Tensor:
    """`layer(inputs)` on symbolic tensors: one Tensor, or a list for a merge layer."""
    many = isinstance(inputs, (list, tuple))
    items = list(inputs) if many else [inputs]
    if not items or not all(isinstance(t, Tensor) for t in items):
        bad = next((t for t in items if not isinstance(t, Tensor)), inputs)
        raise layer._error(f"was called on {type(bad).__name__}; call layers on Input(...) "
                           "and the tensors layers return (the functional API), or use a "
                           "model's predict() on arrays")
    if layer.merges and (not many or len(items) < 2):
        raise layer._error("merges several tensors: call it on a list of two or more, like "
                           f"{layer.type}()([x, y])")
    if not layer.merges and len(items) != 1:
        raise layer._error(f"takes one tensor; received a list of {len(items)} (only merge "
                           "layers such as Add and Concatenate take several)")
    if getattr(layer, "_called", False):
        raise layer._error("was already called on a tensor: a layer used twice would share its "
                           "weights between two places, which cnnkit's graphs do not do; "
                           "create a second layer")
    shapes = [t._shape for t in items]  # without the batch axis a KerasTensor shows
    out = layer.output_shape(shapes if layer.merges else shapes[0])
    check_output_size(layer, out)
    layer._called = True
    return (type(items[0]).result_type or Tensor)(layer, tuple(items), out)
