"""A network's first Conv2D and the 2x2 MaxPooling2D after it, in one kernel (stem.cpp).

Where it runs: `cnnkit.kernels.fuse.plan` asks `stem_pair(steps)` once whether its first two
steps are a stride-1 3x3 or 5x5 convolution with symmetric zero padding, at most 4 input
channels and a multiple of 16 filters, followed by a 2x2, stride-2 max-pool; then, at each
forward, `run_stem` takes the pair when the call is plain (CPU float32 input that needs no
gradient, no hooks on those modules, no tracing, export or torch.compile, autocast off or bf16)
and returns None otherwise, so torch's own conv and pool run.

The fast-cnn presets (16 filters) and seed 003's CNN (32) match. Why a kernel: with so few input
channels torch's conv is bound by memory, not arithmetic; it writes the full-size output, the
pool reads it back and keeps int64 indices, and the backward zero-fills a full-size gradient.
Here the full-size output never leaves registers (bench/README.md has the figures). The forward
rounds as bf16 autocast does and sums in another order: over 99% of its outputs are torch's to
the bit, the rest one bf16 step away (tests/layers/test_stem_kernel.py). Weight gradients are
float32 sums, where torch's bf16 conv rounds them to bf16.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from cnnkit import kernels

MAX_IN_CHANNELS = 4  # beyond a few input channels the conv is compute-bound: oneDNN's ground
KERNEL_SIZES = (3, 5)  # the compiled fast paths


def stem_pair(steps) -> bool:
    """True when steps[0], steps[1] are a conv and pool this kernel computes exactly: cnnkit's
    Conv2d (an `nn.Conv2d` as `.conv`, `.symmetric` padding) and its MaxPool2d (`.two_by_two`),
    read by their attributes (the layers stage sits above this one and is not imported)."""
    if len(steps) < 2:
        return False
    conv = getattr(steps[0], "conv", None)
    if type(conv) is not nn.Conv2d or not getattr(steps[0], "symmetric", False) \
            or not getattr(steps[1], "two_by_two", False):
        return False
    k = conv.kernel_size
    return (k[0] == k[1] and k[0] in KERNEL_SIZES and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
            and isinstance(conv.padding, tuple) and conv.padding[0] == conv.padding[1]
            and conv.in_channels <= MAX_IN_CHANNELS and conv.out_channels % 16 == 0)


def _output_dtype(x: torch.Tensor):
    """bf16 under CPU bf16 autocast, float32 without autocast; None: leave it to torch."""
    if torch.is_autocast_enabled("cpu"):
        return torch.bfloat16 if torch.get_autocast_dtype("cpu") == torch.bfloat16 else None
    return torch.float32


def run_stem(steps, x: torch.Tensor) -> torch.Tensor | None:
    """steps[1](steps[0](x)) by the kernel, or None where torch's ops must run."""
    wrapper, pool = steps[0], steps[1]
    conv = wrapper.conv
    if (x.dtype != torch.float32 or x.dim() != 4 or x.requires_grad
            or conv.weight.dtype != torch.float32 or conv.weight.device.type != "cpu"
            or not kernels.plain_call(x, wrapper, conv, pool, pool.pool)):
        return None
    dtype = _output_dtype(x)
    if dtype is None:
        return None
    k, pad = conv.kernel_size[0], conv.padding[0]
    h, w = x.shape[2], x.shape[3]
    if (h + 2 * pad - k + 1) < 2 or (w + 2 * pad - k + 1) < 2 or x.shape[1] != conv.in_channels:
        return None
    lib = kernels.loaded()
    if lib is None:
        return None
    bias = conv.bias
    if torch.is_grad_enabled() and (conv.weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return _Stem.apply(x, conv.weight, bias, pad, dtype)
    return _forward(lib, x, conv.weight, bias, pad, dtype, want_code=False)[0]


def _prepared(weight, bias, dtype):
    """Weights as the kernel reads them: (K, K, C_in, C_out) float32, rounded to bf16 when the
    output is bf16 (as autocast casts them for torch's conv)."""
    with torch.no_grad():
        w = weight.detach()
        b = None if bias is None else bias.detach()
        if dtype == torch.bfloat16:
            w = w.to(torch.bfloat16).float()
            b = None if b is None else b.to(torch.bfloat16).float()
        return w.permute(2, 3, 1, 0).contiguous(), None if b is None else b.contiguous()


def _forward(lib, x, weight, bias, pad, dtype, want_code):
    x = kernels.channels_last(x)
    n, cin, h, w = x.shape
    co, k = weight.shape[0], weight.shape[2]
    ho, wo = (h + 2 * pad - k + 1) // 2, (w + 2 * pad - k + 1) // 2
    wt, b = _prepared(weight, bias, dtype)
    y = torch.empty((n, co, ho, wo), dtype=dtype, memory_format=torch.channels_last)  # (B, C, H, W)
    code = (torch.empty((n, co, ho, wo), dtype=torch.uint8, memory_format=torch.channels_last)
            if want_code else None)
    lib.cnnkit_stem_forward(x.data_ptr(), wt.data_ptr(), None if b is None else b.data_ptr(),
                            y.data_ptr(), None if code is None else code.data_ptr(),
                            n, h, w, cin, co, k, pad, int(dtype == torch.bfloat16),
                            torch.get_num_threads())
    return y, code, x


class _Stem(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, pad, dtype):
        y, code, x = _forward(kernels.loaded(), x, weight, bias, pad, dtype, want_code=True)
        ctx.save_for_backward(x, code)
        ctx.pad, ctx.dtype, ctx.has_bias = pad, dtype, bias is not None
        ctx.shape, ctx.strides = weight.shape, weight.stride()
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, code = ctx.saved_tensors
        n, cin, h, w = x.shape
        co, _, k, _ = ctx.shape
        g = kernels.channels_last(grad.to(ctx.dtype))
        dw = torch.empty((k, k, cin, co), dtype=torch.float32)
        db = torch.empty(co, dtype=torch.float32)
        kernels.loaded().cnnkit_stem_backward(
            x.data_ptr(), g.data_ptr(), code.data_ptr(), dw.data_ptr(), db.data_ptr(),
            n, h, w, cin, co, k, ctx.pad, int(ctx.dtype == torch.bfloat16),
            torch.get_num_threads())
        # in the weight's own layout (channels_last for cnnkit's networks), as autograd and DDP's
        # gradient buckets expect
        gw = torch.empty(ctx.shape, dtype=torch.float32).as_strided(ctx.shape, ctx.strides)
        gw.copy_(dw.permute(3, 2, 0, 1))
        return None, gw, db if ctx.has_bias else None, None, None
