"""cnnkit's batch norm + ReLU kernel (cnnkit/kernels/bnrelu.cpp) against torch's BatchNorm and
ReLU in training mode: outputs, moving statistics and gradients."""
import copy

import pytest
import torch
from torch import nn

from cnnkit import kernels
from cnnkit.kernels.bnrelu import bn_relu_pair, run_bn_relu
from cnnkit.kernels.fuse import BNReLU, plan


@pytest.fixture(scope="module", autouse=True)
def _compiled():
    kernels.build()  # as `make setup` does: a forward pass never compiles them
    assert kernels.loaded() is not None, kernels.why_not()


def _bn(c, dims):
    torch.manual_seed(c)
    bn = (nn.BatchNorm2d if dims == 4 else nn.BatchNorm1d)(c, eps=1e-3, momentum=0.1)
    with torch.no_grad():  # trained-looking parameters and statistics, not 1s and 0s
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    return bn


def _input(shape, dtype):
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(shape, generator=g) * 2 + 0.7).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(64, 16, 14, 14), (32, 32, 7, 7), (128, 64, 3, 3), (128, 128),
                                   (5, 24)])
def test_forward_backward_and_moving_statistics_are_torchs(dtype, shape):
    bn = _bn(shape[1], len(shape))
    ref_bn = copy.deepcopy(bn)
    relu = nn.ReLU()
    x = _input(shape, dtype)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    mine = run_bn_relu(bn, relu, xa)
    assert mine is not None and mine.dtype == dtype and mine.stride() == x.stride()
    ref = relu(ref_bn(xb))
    g = torch.randn(shape, generator=torch.Generator().manual_seed(2)).to(dtype)
    mine.backward(g)
    ref.backward(g)
    if dtype == torch.float32:
        torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-4, atol=1e-5)
    else:  # the same rounding to bf16; float sums in another order move a value one bf16 step
        step = ref.float().abs() * 2 ** -7 + 1e-6
        assert ((mine.float() - ref.float()).abs() <= step).all()
        assert ((xa.grad.float() - xb.grad.float()).abs()
                <= xb.grad.float().abs() * 2 ** -6 + 1e-3 * xb.grad.float().abs().max()).all()
    for p, q in ((bn.weight.grad, ref_bn.weight.grad), (bn.bias.grad, ref_bn.bias.grad)):
        torch.testing.assert_close(p, q, rtol=1e-3 if dtype == torch.float32 else 2e-2,
                                   atol=1e-3 if dtype == torch.float32 else 2e-2)
    torch.testing.assert_close(bn.running_mean, ref_bn.running_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var, ref_bn.running_var, rtol=1e-5, atol=1e-6)
    assert bn.num_batches_tracked.item() == ref_bn.num_batches_tracked.item() == 1


def test_a_large_mean_keeps_an_exact_variance():
    # mean 1000, spread 0.01: sums of squares in float32 would lose the variance entirely
    bn, relu = _bn(16, 4), nn.ReLU()
    before = bn.running_var.clone()
    x = (torch.randn(32, 16, 8, 8, dtype=torch.float64) * 0.01 + 1000).float()
    with torch.no_grad():
        run_bn_relu(bn, relu, x.contiguous(memory_format=torch.channels_last))
    var = x.double().permute(1, 0, 2, 3).reshape(16, -1).var(dim=1)  # unbiased, in float64
    torch.testing.assert_close(bn.running_var.double(), 0.9 * before.double() + 0.1 * var,
                               rtol=1e-4, atol=1e-9)


def test_eval_mode_and_other_pairs_stay_on_torch():
    bn, relu = _bn(16, 4), nn.ReLU()
    x = _input((4, 16, 6, 6), torch.float32)
    bn.eval()
    assert run_bn_relu(bn, relu, x) is None  # the moving statistics: torch's batch norm
    bn.train()
    assert run_bn_relu(bn, relu, x[:1, :, :1, :1]) is None  # one value a channel: torch's error
    assert run_bn_relu(bn, relu, x.half()) is None
    assert not bn_relu_pair(bn, nn.LeakyReLU())
    assert not bn_relu_pair(nn.BatchNorm2d(16, affine=False), relu)
    assert not bn_relu_pair(nn.BatchNorm2d(16, momentum=None), relu)
    steps = [nn.Conv2d(3, 8, 3), bn, relu, nn.Flatten()]
    made = plan(steps)
    assert made[0] is steps[0] and isinstance(made[1], BNReLU) and made[2] is steps[3]
