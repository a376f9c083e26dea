"""What every layer shares: the Layer base class, argument checking that echoes the bad
value, and the sliding-window arithmetic (output sizes, Keras's 'same' padding) behind
shape inference and `summary(explain=True)`. Pure Python: no torch here.
"""
from __future__ import annotations

import math
from typing import ClassVar

from cnnkit.errors import CnnkitError, clipped

Shape = tuple[int, ...]
ACTIVATIONS = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax", "elu", "gelu",
               "silu", "softplus", "relu6", "hard_sigmoid", "hard_silu")  # the last: issue 27
INITIALIZERS = ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
                "lecun_normal", "xavier_uniform", "xavier_normal", "zeros", "torch")

# Sizes no model may reach, refused by shape inference from the arithmetic alone, before a
# tensor is allocated or a file written: past these, building fails (or swaps) anyway.
MAX_PARAMS = 2**31  # a model's parameters (and buffers): 8 GiB as float32, before gradients
MAX_VALUES_PER_IMAGE = 2**30  # the input, or one layer's output, for one image: 4 GiB as float32


def _fmt(shape: Shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


class Layer:
    """A layer spec: validated arguments, shape inference, parameter counts, and the torch
    module it builds into. Subclasses set `base_name` (Keras's automatic name: `conv2d`,
    `conv2d_1`, ...) and implement the hooks below.

    A layer of your own, decorated with `@cnnkit.layers.register_layer` (which also derives
    `base_name` from the class name), implements:
        __init__(..., name=None)  `super().__init__(name)`, then check each argument, raising
                                  `self._error(...)`: one line naming the bad value
        output_shape(shape)       its output shape, Keras's without the batch axis: (H, W, C)
                                  for images, (D,) for vectors
        build(shape, init)        one torch module computing it on NCHW images or (B, D)
                                  vectors; its parameters and buffers are the layer's weights,
                                  saved under the layer's name (`layers.<name>.<key>`)
        get_config()              the arguments that rebuild it: `cls(**get_config())`
    and optionally
        params(shape)             (trainable, non_trainable) in pure Python; the default counts
                                  a module built for `shape`
        explain(shape, out)       the lines `summary(explain=True)` prints under its row
        l2()                      an L2 factor: the loss adds l2 · Σw² over the module's
                                  parameters except biases (names ending in 'bias')
    """

    base_name: ClassVar[str] = "layer"
    merges: ClassVar[bool] = False  # True: takes a list of inputs (Add, Concatenate; graph models)
    name: str | None = None  # None: the model names it Keras's way, from base_name
    # True for a layer taking several inputs (Add, Concatenate): its output_shape, params,
    # macs, explain and build receive a list of shapes, its module's forward one tensor each
    merges: ClassVar[bool] = False

    def __init__(self, name: str | None = None):
        self.name = check_layer_name(name)

    @property
    def type(self) -> str:
        return type(self).__name__

    def _error(self, message: str) -> CnnkitError:
        return CnnkitError(f"{self.type}{f' {self.name!r}' if self.name else ''}: {message}")

    # -- hooks -------------------------------------------------------------------------------
    def get_config(self) -> dict:
        return {}

    def output_shape(self, shape: Shape) -> Shape:
        return shape

    def params(self, shape: Shape) -> tuple[int, int]:
        """(trainable, non_trainable): parameters, then floating-point buffers such as batch
        norm's moving statistics (Keras counts both). This default builds the module to count
        them; the built-in layers override it with arithmetic, so summaries need no torch."""
        import torch

        with torch.random.fork_rng(devices=[]):  # counting must not shift the user's seeded init
            module = self.build(shape, "keras")
        if module is None:
            return 0, 0
        trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
        return trainable, frozen + sum(b.numel() for b in module.buffers() if b.is_floating_point())

    def macs(self, shape: Shape, out: Shape) -> int:
        return 0

    def explain(self, shape: Shape, out: Shape) -> list[str]:
        count = sum(self.params(shape))
        return [f"output shape {_fmt(out)}; " + (f"{count:,} parameters" if count else "no parameters")]

    def build(self, shape: Shape, init: str):
        """The torch module computing this layer, or None when there is nothing to compute.
        `init` is the model's style, 'keras' or 'torch' (see initializers.py)."""
        raise NotImplementedError(f"{self.type} does not implement build(shape, init)")

    def fused_activation(self) -> str:
        """The `activation=` of Conv2D and Dense. The model applies it after `build`'s module,
        so that it can pool before it, or split a final softmax off into `output_activation`."""
        return "linear"

    def l2(self) -> float:
        return 0.0

    def __call__(self, inputs):
        """The functional API: this layer's output on symbolic tensors (cnnkit.layers.symbolic)."""
        from cnnkit.layers.symbolic import call

        return call(self, inputs)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{self.type}({args})"


def check_layer_name(name):
    """A layer's name keys its weights (`layers.<name>.conv.weight`), so it must be a torch
    module name: a non-empty string without '.'; and it is shown in summaries, diagrams and
    pages, so it holds no control character (a terminal escape) nor byte that is not UTF-8."""
    if name is not None and (not isinstance(name, str) or not name or "." in name
                             or not name.isprintable()):
        raise CnnkitError(f"layer name {clipped(name)} cannot name a layer's weights; valid: a "
                          "non-empty printable string without '.', like 'conv_1'")
    return name


# -- padding arithmetic (pure Python: shape inference must not import torch) -------------------
def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Keras/TensorFlow 'same': output ceil(size/stride); extra pixel goes after (bottom/right)."""
    out = -(-size // stride)  # ceil(size / stride) in integers: a float would round huge strides to 0
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def resolve_padding(padding, size_hw, kernel_hw, stride_hw) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) for 'valid', 'same' or PyTorch-style explicit ints."""
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "same":
        t, b = same_padding(size_hw[0], kernel_hw[0], stride_hw[0])
        left, r = same_padding(size_hw[1], kernel_hw[1], stride_hw[1])
        return t, b, left, r
    ph, pw = padding
    return ph, ph, pw, pw


# -- argument checking --------------------------------------------------------------------------
def _positive_int(layer: Layer, key: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise layer._error(f"{key} must be a positive integer; received {key}={clipped(value)}")
    return value


def _real(layer: Layer, key: str, value, ok, valid: str) -> float:
    """A finite number, not a bool, for which `ok` holds: NaN passes every comparison's
    negation (`not nan < 0`), and an infinite epsilon or slope trains to NaN."""
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int past float's range
            pass
    if number is None or not math.isfinite(number) or not ok(number):
        raise layer._error(f"{key} must be {valid}; received {key}={clipped(value)}")
    return number


def _bool(layer: Layer, key: str, value) -> bool:
    """True or False itself: `bool("false")` is True, so a quoted or misspelt value would
    silently mean the opposite."""
    if not isinstance(value, bool):
        raise layer._error(f"{key} must be true or false; received {key}={clipped(value)}")
    return value


def _pair(layer: Layer, key: str, value, minimum: int = 1) -> tuple[int, int]:
    items = [value, value] if isinstance(value, int) and not isinstance(value, bool) else value
    if (not isinstance(items, (list, tuple)) or len(items) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in items)):
        kind = "positive integer" if minimum == 1 else "non-negative integer"
        raise layer._error(f"{key} must be a {kind} or a pair of them; received {key}={clipped(value)}")
    return int(items[0]), int(items[1])


def _activation(layer: Layer, value) -> str:
    value = "linear" if value is None else value
    if value not in ACTIVATIONS:
        raise layer._error(f"unknown activation {clipped(value)}; valid: {', '.join(ACTIVATIONS)}")
    return value


def _padding(layer: Layer, value, kernel: tuple[int, int]):
    """'valid' | 'same' (Keras) or explicit ints (PyTorch's knob, e.g. MaxPool2d(2, 2, padding=1))."""
    if value in ("valid", "same"):
        return value
    if isinstance(value, str):
        raise layer._error(f"unknown padding {clipped(value)}; valid: 'valid', 'same', or an integer")
    return _pair(layer, "padding", value, minimum=0)


def _initializer(layer: Layer, value) -> str | None:
    if value is not None and value not in INITIALIZERS:
        raise layer._error(f"unknown kernel_initializer {clipped(value)}; valid: "
                           f"{', '.join(INITIALIZERS)}")
    return value


def _l2(layer: Layer, value) -> float:
    """Keras spellings: 'l2' (0.01), {'l2': 0.001}, or a plain number."""
    if value is None:
        return 0.0
    if value == "l2":
        return 0.01
    if isinstance(value, dict) and set(value) == {"l2"}:
        value = value["l2"]
    try:
        return _real(layer, "kernel_regularizer", value, lambda v: v >= 0, "")
    except CnnkitError:
        raise layer._error(f"kernel_regularizer must be 'l2', {{'l2': factor}} or a finite "
                           f"factor >= 0; received {clipped(value)}") from None


def _spatial(layer: Layer, shape: Shape) -> Shape:
    if len(shape) != 3:
        raise layer._error(f"needs an image input (height, width, channels); received {_fmt(shape)}"
                           " — it cannot follow Flatten, GlobalAveragePooling2D or a vector")
    return shape


def _window_output(layer, shape, kernel, strides, padding) -> tuple[Shape, tuple[int, ...]]:
    """Output (H, W) and pads (top, bottom, left, right) of a sliding window."""
    h, w, _ = _spatial(layer, shape)
    pads = resolve_padding(padding, (h, w), kernel, strides)
    ph, pw = h + pads[0] + pads[1], w + pads[2] + pads[3]
    if kernel[0] > ph or kernel[1] > pw:
        raise layer._error(f"kernel {kernel} is larger than its padded input ({ph}, {pw}); "
                           f"use a kernel of at most ({ph}, {pw}) or padding='same'")
    return ((ph - kernel[0]) // strides[0] + 1, (pw - kernel[1]) // strides[1] + 1), pads


def _explain_window(shape, out, kernel, strides, pads, padding) -> list[str]:
    lines = []
    for axis, name in ((0, "H"), (1, "W")):
        i, k, s, o = shape[axis], kernel[axis], strides[axis], out[axis]
        before, after = pads[2 * axis], pads[2 * axis + 1]
        if before == after:
            lines.append(f"{name}: O = floor((I - K + 2P) / S) + 1 = floor(({i} - {k} + 2·{before}) / {s})"
                         f" + 1 = {o}")
        else:  # Keras 'same' with an odd total: one more row/column after than before
            lines.append(f"{name}: O = floor((I - K + P_before + P_after) / S) + 1 = "
                         f"floor(({i} - {k} + {before} + {after}) / {s}) + 1 = {o}")
        if padding == "same":
            lines[-1] += f"   ('same' keeps ceil(I / S) = ceil({i} / {s}) = {o})"
    return lines


def check_input_shape(shape) -> tuple[int, int, int]:
    if (not isinstance(shape, (list, tuple)) or len(shape) != 3
            or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in shape)):
        two = isinstance(shape, (list, tuple)) and len(shape) == 2
        raise CnnkitError(f"input_shape must be (height, width, channels) of positive integers; "
                          f"received {clipped(shape)}"
                          + (" — for grayscale add channels: (H, W, 1)" if two else ""))
    shape = tuple(int(s) for s in shape)
    if math.prod(shape) > MAX_VALUES_PER_IMAGE:
        raise CnnkitError(f"input_shape {clipped(shape)} is {_values(shape)}; valid: at most "
                          f"{MAX_VALUES_PER_IMAGE:,} values per image ({_gib(MAX_VALUES_PER_IMAGE)})")
    return shape  # type: ignore[return-value]


def _count(n: int) -> str:
    return f"{n:,}" if n < 10**30 else "over 10^30"  # (f"{n:,}" raises past 4,300 digits)


def _values(shape: Shape) -> str:
    n = math.prod(shape)
    return f"{_count(n)} values per image ({_gib(n)})"


def _gib(values: int) -> str:
    """The memory `values` float32 numbers take."""
    if values >= 10**30:
        return "beyond any memory"
    gib = values * 4 / 2**30
    return f"{gib:,.0f} GiB as float32" if gib >= 10 else f"{gib:.1f} GiB as float32"


def check_output_size(layer: Layer, out: Shape) -> None:
    """One image's output of `layer` must fit in memory (checked before anything is built)."""
    if math.prod(out) > MAX_VALUES_PER_IMAGE:
        raise layer._error(f"its output {clipped(out)} is {_values(out)}; valid: at most "
                           f"{MAX_VALUES_PER_IMAGE:,} values per image ({_gib(MAX_VALUES_PER_IMAGE)})")


def check_param_count(layer: Layer, params: int, total: int) -> None:
    """The model's parameters up to and including `layer` (`total`) must fit MAX_PARAMS."""
    if total > MAX_PARAMS:
        bring = "" if params == total else f" bring the model to {_count(total)}"
        raise layer._error(f"{_count(params)} parameters{bring} ({_gib(total)}); valid: "
                           f"a model of at most {MAX_PARAMS:,} parameters ({_gib(MAX_PARAMS)})")
