"""BatchNormalization then ReLU, in training mode, by cnnkit's kernel (bnrelu.cpp).

`fuse.plan` pairs a BatchNorm2d/1d with the ReLU after it; at each call `run_bn_relu` takes
the pair when the batch norm is training (batch statistics, moving statistics updated), the input
is bf16 or float32 on the CPU in rows of channels (channels_last images, or (N, C) features),
and the call is plain (no hooks, tracing, export or torch.compile). Otherwise it returns None and
torch's batch norm and ReLU run, as they always do in eval mode.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from cnnkit import kernels

DTYPES = (torch.bfloat16, torch.float32)


def bn_relu_pair(bn, relu) -> bool:
    return (type(bn) in (nn.BatchNorm2d, nn.BatchNorm1d) and type(relu) is nn.ReLU
            and bn.affine and bn.track_running_stats and bn.momentum is not None)


def _rows(x: torch.Tensor) -> torch.Tensor | None:
    """x with channels last in memory (a (rows, C) matrix underneath), or None."""
    if x.dim() == 4:
        return kernels.channels_last(x)
    if x.dim() == 2:
        return x.contiguous()
    return None


def run_bn_relu(bn, relu, x: torch.Tensor) -> torch.Tensor | None:
    """relu(bn(x)) by the kernel, or None where torch's ops must run."""
    if (not bn.training or x.dtype not in DTYPES or x.dim() not in (2, 4)
            or x.numel() <= x.shape[1] or x.shape[1] != bn.num_features
            or bn.weight.dtype != torch.float32 or not kernels.plain_call(x, bn, relu)):
        return None  # one value per channel: torch's own error says why
    lib = kernels.loaded()
    if lib is None:
        return None
    with torch.no_grad():
        bn.num_batches_tracked.add_(1)
    if torch.is_grad_enabled() and (x.requires_grad or bn.weight.requires_grad
                                    or bn.bias.requires_grad):
        return _BNReLU.apply(x, bn.weight, bn.bias, bn)
    return _forward(lib, _rows(x), bn)[0]


def _forward(lib, x, bn):
    c = x.shape[1]
    y = torch.empty_like(x)  # the same layout: channels_last images or (N, C)
    mean = torch.empty(c, dtype=torch.float32)
    invstd = torch.empty(c, dtype=torch.float32)
    rm, rv = bn.running_mean, bn.running_var
    lib.cnnkit_bnrelu_forward(x.data_ptr(), bn.weight.data_ptr(), bn.bias.data_ptr(),
                              y.data_ptr(), mean.data_ptr(), invstd.data_ptr(), rm.data_ptr(),
                              rv.data_ptr(), float(bn.momentum), float(bn.eps),
                              x.numel() // c, c, int(x.dtype == torch.bfloat16),
                              torch.get_num_threads())
    return y, mean, invstd


class _BNReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, bn):
        x = _rows(x)
        y, mean, invstd = _forward(kernels.loaded(), x, bn)
        ctx.save_for_backward(x, y, mean, invstd, weight)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, y, mean, invstd, weight = ctx.saved_tensors
        g = grad.to(x.dtype)
        if g.stride() != y.stride():  # the kernel reads it in y's layout
            g = torch.empty_like(y).copy_(g)
        c = x.shape[1]
        gx = torch.empty_like(x)
        dgamma = torch.empty(c, dtype=torch.float32)
        dbeta = torch.empty(c, dtype=torch.float32)
        kernels.loaded().cnnkit_bnrelu_backward(
            g.data_ptr(), y.data_ptr(), x.data_ptr(), mean.data_ptr(), invstd.data_ptr(),
            weight.data_ptr(), gx.data_ptr(), dgamma.data_ptr(), dbeta.data_ptr(),
            x.numel() // c, c, int(x.dtype == torch.bfloat16), torch.get_num_threads())
        return gx, dgamma, dbeta, None
