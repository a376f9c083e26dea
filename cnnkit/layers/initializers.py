"""Weight initialization by name: Keras's defaults (Glorot-uniform kernels, zero biases) or
PyTorch's own (as seed 003 uses), chosen per model and overridable per layer."""
from __future__ import annotations

import math

import torch
from torch import nn

_TRUNC_STD = 0.87962566103423978  # std of a unit normal truncated at ±2σ (Keras's correction)


def _fans(weight: torch.Tensor) -> tuple[int, int]:
    receptive = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def _variance_scaling(weight, scale: float, mode: str, distribution: str, fans=None) -> None:
    fan_in, fan_out = fans or _fans(weight)
    n = {"fan_in": fan_in, "fan_avg": (fan_in + fan_out) / 2}[mode]
    if distribution == "uniform":
        limit = math.sqrt(3.0 * scale / n)
        nn.init.uniform_(weight, -limit, limit)
    else:
        std = math.sqrt(scale / n) / _TRUNC_STD
        nn.init.trunc_normal_(weight, 0.0, std, -2 * std, 2 * std)


_KERNEL = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "xavier_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "normal"),
    "xavier_normal": (1.0, "fan_avg", "normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "he_normal": (2.0, "fan_in", "normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "normal"),
}


@torch.no_grad()
def initialize(module: nn.Module, kernel_initializer: str | None, style: str,
               fans: tuple[int, int] | None = None) -> None:
    """Initialize a Conv2d/Linear in place.

    style 'keras': kernel Glorot-uniform, bias zeros. style 'torch': PyTorch's defaults, which
    the module already has. An explicit `kernel_initializer` overrides the kernel only; a
    Keras-style model still gets zero biases. `fans`: (fan_in, fan_out) as Keras counts them
    where its kernel layout differs from torch's (a depthwise kernel (kh, kw, in, multiplier))."""
    name = kernel_initializer or ("glorot_uniform" if style == "keras" else "torch")
    if name == "zeros":
        nn.init.zeros_(module.weight)
    elif name != "torch":
        _variance_scaling(module.weight, *_KERNEL[name], fans=fans)
    if style == "keras" and module.bias is not None:
        nn.init.zeros_(module.bias)
