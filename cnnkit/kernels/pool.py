"""A 2x2, stride-2 max-pool by cnnkit's kernel (pool.cpp), where torch's would run otherwise.

`MaxPool2d` (cnnkit.layers.nn) calls `run_pool` for a 2x2 pool with stride 2 and no padding; it
returns None, and torch's own pool runs, unless the call is plain: a 4-D CPU tensor in bf16 or
float32, no hooks on the inner pool, no tracing, export or torch.compile. Outputs and gradients
are torch's to the bit (tests/layers/test_pool_kernel.py); the saving is torch's int64 indices
and its zero-filled gradient (bench/README.md).
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from cnnkit import kernels

DTYPES = (torch.bfloat16, torch.float32)


def run_pool(pool: torch.nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """F.max_pool2d(x, 2) by the kernel, or None where torch's pool must run."""
    if (x.dim() != 4 or x.dtype not in DTYPES or x.shape[2] < 2 or x.shape[3] < 2
            or not kernels.plain_call(x, pool)):
        return None
    lib = kernels.loaded()
    if lib is None:
        return None
    if torch.is_grad_enabled() and x.requires_grad:
        return _Pool.apply(x)
    return _forward(lib, x, want_code=False)[0]


def _forward(lib, x, want_code):
    x = kernels.channels_last(x)
    n, c, h, w = x.shape
    shape = (n, c, h // 2, w // 2)
    y = torch.empty(shape, dtype=x.dtype, memory_format=torch.channels_last)  # (B, C, H/2, W/2)
    code = torch.empty(shape, dtype=torch.uint8, memory_format=torch.channels_last) \
        if want_code else None
    lib.cnnkit_pool2_forward(x.data_ptr(), y.data_ptr(), None if code is None else code.data_ptr(),
                             n, h, w, c, int(x.dtype == torch.bfloat16), torch.get_num_threads())
    return y, code


class _Pool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y, code = _forward(kernels.loaded(), x, want_code=True)
        ctx.save_for_backward(code)
        ctx.shape, ctx.dtype = x.shape, x.dtype
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (code,) = ctx.saved_tensors
        n, c, h, w = ctx.shape
        g = kernels.channels_last(grad.to(ctx.dtype))
        gx = torch.empty((n, c, h, w), dtype=ctx.dtype, memory_format=torch.channels_last)
        kernels.loaded().cnnkit_pool2_backward(g.data_ptr(), code.data_ptr(), gx.data_ptr(), n, h,
                                               w, c, int(ctx.dtype == torch.bfloat16),
                                               torch.get_num_threads())
        return gx
