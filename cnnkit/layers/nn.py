"""Engine modules: the PyTorch side of each layer, NCHW inside, Keras semantics outside.

Keras pads 'same' asymmetrically when the total padding is odd (the extra row/column goes at the
bottom/right), which PyTorch's `padding=` cannot express; these modules pad explicitly then.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# --- activations -------------------------------------------------------------------------------
LEAKY_RELU_SLOPE = 0.01  # the seeds define leaky ReLU with slope 0.01


class Softmax(nn.Module):
    """Softmax over channels: Keras's last axis is our dim 1 (NCHW or (B, D))."""

    def forward(self, x):
        return torch.softmax(x, dim=1)


def activation_module(name: str, negative_slope: float | None = None) -> nn.Module:
    if name == "linear":
        return nn.Identity()
    if name == "leaky_relu":
        return nn.LeakyReLU(LEAKY_RELU_SLOPE if negative_slope is None else negative_slope)
    return {
        "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "softmax": Softmax,
        "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU, "softplus": nn.Softplus,
        # Keras 3's relu6, hard_sigmoid (relu6(x + 3) / 6) and hard_silu are torch's own
        "relu6": nn.ReLU6, "hard_sigmoid": nn.Hardsigmoid, "hard_silu": nn.Hardswish,
    }[name]()


# --- layers ------------------------------------------------------------------------------------
class Conv2d(nn.Module):
    def __init__(self, in_ch, out_ch, kernel, stride, pads, bias, dilation=1, groups=1):
        super().__init__()
        t, b, left, r = pads
        self.symmetric = t == b and left == r
        self.pads = (left, r, t, b)  # F.pad order: last dim first
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride,
                              padding=(t, left) if self.symmetric else 0, bias=bias,
                              dilation=dilation, groups=groups)

    def forward(self, x):  # (B, C, H, W)
        if not self.symmetric:
            x = F.pad(x, self.pads)
        return self.conv(x)


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


class MaxPool2d(nn.Module):
    def __init__(self, kernel, stride, pads):
        super().__init__()
        t, b, left, r = pads
        # PyTorch pads max-pooling with -inf itself, but only symmetrically and up to k/2.
        self.native = t == b and left == r and t <= kernel[0] // 2 and left <= kernel[1] // 2
        self.pads = (left, r, t, b)
        self.pool = nn.MaxPool2d(kernel, stride, padding=(t, left) if self.native else 0)
        # cnnkit.kernels.pool: a 2x2 pool with stride 2 runs on cnnkit's kernel where it can
        self.two_by_two = (_pair(kernel) == (2, 2) and _pair(stride) == (2, 2)
                           and not any(pads))

    def forward(self, x):
        if self.two_by_two:
            from cnnkit.kernels.pool import run_pool

            y = run_pool(self.pool, x)
            if y is not None:
                return y
        if not self.native:
            x = F.pad(x, self.pads, value=float("-inf"))
        return self.pool(x)


class AvgPool2d(nn.Module):
    """Average pooling. 'same' (Keras) averages only real pixels; explicit ints (PyTorch) count
    the zero padding, as nn.AvgPool2d does by default."""

    def __init__(self, kernel, stride, pads, count_pad: bool):
        super().__init__()
        t, b, left, r = pads
        self.pads = (left, r, t, b)
        self.kernel, self.stride, self.count_pad = kernel, stride, count_pad
        self.any_pad = any(pads)

    def forward(self, x):
        if not self.any_pad:
            return F.avg_pool2d(x, self.kernel, self.stride)
        summed = F.avg_pool2d(F.pad(x, self.pads), self.kernel, self.stride)
        if self.count_pad:
            return summed
        ones = torch.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype, device=x.device)
        frac = F.avg_pool2d(F.pad(ones, self.pads), self.kernel, self.stride)
        return summed / frac


class ZeroPad2d(nn.Module):
    def __init__(self, pads):
        super().__init__()
        t, b, left, r = pads
        self.pads = (left, r, t, b)

    def forward(self, x):
        return F.pad(x, self.pads)


class Flatten(nn.Module):
    """Flatten in Keras's (H, W, C) order. On a channels_last tensor the permute is free."""

    def forward(self, x):
        if x.dim() == 4:
            x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        return x.reshape(x.shape[0], -1)


class GlobalAvgPool2d(nn.Module):
    def __init__(self, keepdims: bool = False):
        super().__init__()
        self.keepdims = keepdims

    def forward(self, x):  # (B, C, H, W) -> (B, C), or (B, C, 1, 1) with keepdims
        return x.mean(dim=(2, 3), keepdim=self.keepdims)


class Dense(nn.Module):
    """Dense on the last Keras axis: channels for images, so (B, C, H, W) -> (B, units, H, W)."""

    def __init__(self, in_features, units, bias):
        super().__init__()
        self.linear = nn.Linear(in_features, units, bias=bias)

    def forward(self, x):
        if x.dim() == 4:
            return self.linear(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.linear(x)


class Net(nn.Module):
    """The built model. `forward` returns logits: the last layer's softmax/sigmoid is split off
    into `output_activation`, so losses work from logits and never apply softmax twice.

    A layer owns its weights by name: `layers[name]` is the module each layer of the model
    built, in the model's order, so a state-dict key is `layers.<layer name>.<module key>`
    (`layers.conv2d.conv.weight`, `layers.dense_1.linear.bias`,
    `layers.batch_normalization.running_mean`). A layer with nothing to compute holds an
    Identity. The activation fused into a Conv2D or Dense (`activation="relu"`) is
    `activations[name]` and holds no weights. `steps` is the order the modules run in, which
    can differ from the layers' (a max-pooling runs before the activation in front of it);
    the parameters stay in layer order, which saved optimizer and averaging states index by.
    """

    def __init__(self, layers: dict[str, nn.Module], activations: dict[str, nn.Module],
                 steps: list[nn.Module], output_activation: str | None):
        super().__init__()
        self.layers = nn.ModuleDict(layers)
        self.activations = nn.ModuleDict(activations)
        self.steps = list(steps)  # a plain list: each module is registered once, above
        self.output_activation = output_activation
        # Test-time flips: in eval mode, average the logits of each image and its mirror image.
        self.flip_average = False
        self._plan = None  # the steps as cnnkit.kernels.fuse runs them: made on first use

    def _run(self, x):
        if self._plan is None:
            from cnnkit.kernels.fuse import plan

            self._plan = plan(self.steps)
        for step in self._plan:
            x = step(x)
        return x

    def forward(self, x):
        if self.flip_average and not self.training:
            n = x.shape[0]
            logits = self._run(torch.cat([x, x.flip(3)]))
            return (logits[:n] + logits[n:]) * 0.5
        return self._run(x)

    def outputs(self, logits):
        """What the user's model computes: logits with the declared last activation applied."""
        if self.output_activation == "softmax":
            return torch.softmax(logits, dim=1)
        if self.output_activation == "sigmoid":
            return torch.sigmoid(logits)
        return logits

    def probabilities(self, logits):
        """Class probabilities (N, K) by the output contract (cnnkit.layers.outputs): softmax,
        sigmoid per unit, or [1 - p, p] for one sigmoid unit; plain logits read as softmax."""
        from cnnkit.layers.outputs import probabilities

        return probabilities(logits, self.output_activation)


# -- modern CNN layers (issue 27) ---------------------------------------------------------------
# A module whose weights Keras lays out otherwise than torch defines `keras_layout()`: per weight,
# in Keras's order, (tensor, shape, order) such that Keras's array is
# tensor.reshape(shape).permute(order) (cnnkit.model.saving reads and writes it both ways).
def _conv_layout(conv: nn.Conv2d) -> list:
    w = conv.weight  # (out, in, kh, kw) -> Keras (kh, kw, in, out)
    return [(w, tuple(w.shape), (2, 3, 1, 0))] + (
        [(conv.bias, tuple(conv.bias.shape), (0,))] if conv.bias is not None else [])


def _depthwise_layout(conv: nn.Conv2d, multiplier: int) -> list:
    w = conv.weight  # (in · m, 1, kh, kw), output channel i·m + j -> Keras (kh, kw, in, m)
    shape = (w.shape[0] // multiplier, multiplier, w.shape[2], w.shape[3])
    return [(w, shape, (2, 3, 0, 1))]


class DepthwiseConv2d(nn.Module):
    """One kh × kw filter (`multiplier` of them) per input channel: a grouped conv, groups=in."""

    def __init__(self, in_ch, multiplier, kernel, stride, pads, bias, dilation):
        super().__init__()
        self.multiplier = multiplier
        self.depthwise = Conv2d(in_ch, in_ch * multiplier, kernel, stride, pads, bias, dilation,
                                groups=in_ch)

    def forward(self, x):  # (B, C, H, W) -> (B, C · m, H', W')
        return self.depthwise(x)

    def keras_layout(self):
        conv = self.depthwise.conv
        return _depthwise_layout(conv, self.multiplier) + _conv_layout(conv)[1:]


class SeparableConv2d(nn.Module):
    """Depthwise then a 1×1 pointwise conv; Keras's one bias belongs to the pointwise one."""

    def __init__(self, in_ch, multiplier, filters, kernel, stride, pads, bias, dilation):
        super().__init__()
        self.multiplier = multiplier
        self.depthwise = Conv2d(in_ch, in_ch * multiplier, kernel, stride, pads, False, dilation,
                                groups=in_ch)
        self.pointwise = nn.Conv2d(in_ch * multiplier, filters, 1, bias=bias)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))

    def keras_layout(self):  # [depthwise_kernel, pointwise_kernel, bias]
        return _depthwise_layout(self.depthwise.conv, self.multiplier) + _conv_layout(self.pointwise)


class ReLU(nn.Module):
    """Keras's ReLU(max_value, negative_slope, threshold): x above the threshold (capped at
    max_value), negative_slope · (x - threshold) below it."""

    def __init__(self, max_value, negative_slope, threshold):
        super().__init__()
        self.max_value, self.negative_slope, self.threshold = max_value, negative_slope, threshold

    def forward(self, x):
        y = x * (x > self.threshold) if self.threshold else F.relu(x)
        if self.max_value is not None:
            y = y.clamp(max=self.max_value)
        if self.negative_slope:
            y = y - self.negative_slope * F.relu(self.threshold - x)
        return y


class GlobalMaxPool2d(nn.Module):
    def __init__(self, keepdims: bool = False):
        super().__init__()
        self.keepdims = keepdims

    def forward(self, x):  # (B, C, H, W) -> (B, C), or (B, C, 1, 1) with keepdims
        return x.amax(dim=(2, 3), keepdim=self.keepdims)


def to_keras_layout(x):
    """Images NCHW -> Keras's NHWC; other tensors are already in Keras's layout."""
    return x.permute(0, 2, 3, 1) if x.dim() == 4 else x


def from_keras_layout(x):
    return x.permute(0, 3, 1, 2) if x.dim() == 4 else x


class Reshape(nn.Module):
    """Keras's reshape reads values in (H, W, C) order, so images go channels-last first."""

    def __init__(self, target):
        super().__init__()
        self.target = tuple(target)

    def forward(self, x):
        y = to_keras_layout(x).reshape((x.shape[0],) + self.target)
        return from_keras_layout(y)


class NoiseDropout(nn.Module):
    """Dropout with one draw per Keras `noise_shape` cell ((None, 1, 1, 1): per image, as
    EfficientNet's drop-connect): None takes the input's size, 1 shares the draw along an axis."""

    def __init__(self, rate, noise_shape):
        super().__init__()
        self.rate, self.noise_shape = rate, tuple(noise_shape)

    def forward(self, x):
        if not self.training or self.rate == 0:
            return x
        size = to_keras_layout(x).shape
        shape = [n if s is None else s for n, s in zip(size, self.noise_shape)]
        keep = torch.rand(shape, dtype=x.dtype, device=x.device) >= self.rate
        mask = from_keras_layout(keep.to(x.dtype)) / (1 - self.rate)
        return x * mask


class Merge(nn.Module):
    """Several inputs, one output, element by element (size-1 axes broadcast, as in Keras)."""

    def __init__(self, op: str):
        super().__init__()
        self.op = op

    def forward(self, *xs):
        y = xs[0]
        for x in xs[1:]:
            y = _MERGE_OPS[self.op](y, x)
        return y / len(xs) if self.op == "average" else y


_MERGE_OPS = {"add": torch.add, "subtract": torch.sub, "multiply": torch.mul,
              "average": torch.add, "maximum": torch.maximum, "minimum": torch.minimum}


class Concatenate(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, *xs):
        return torch.cat(xs, dim=self.dim)
