"""cnnkit's 2x2 max-pool kernel (cnnkit/kernels/pool.cpp) against torch's own pool: the same
outputs and gradients to the bit, ties and NaNs included."""
import pytest
import torch
import torch.nn.functional as F

from cnnkit import kernels
from cnnkit.kernels.pool import run_pool
from cnnkit.layers.nn import MaxPool2d


@pytest.fixture(scope="module", autouse=True)
def _compiled():
    kernels.build()  # as `make setup` does: a forward pass never compiles them
    assert kernels.loaded() is not None, kernels.why_not()


def _pool():
    return MaxPool2d((2, 2), (2, 2), (0, 0, 0, 0))


def _both(x, grad_seed=1):
    """((output, input gradient) by the kernel, the same by torch)."""
    out = []
    for fused in (True, False):
        xi = x.detach().clone().requires_grad_()
        y = run_pool(_pool().pool, xi) if fused else F.max_pool2d(xi, 2)
        assert y is not None
        g = torch.randn(y.shape, generator=torch.Generator().manual_seed(grad_seed)).to(y.dtype)
        y.backward(g.contiguous(memory_format=torch.channels_last))
        out.append((y.detach(), xi.grad))
    return out


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("shape", [(8, 16, 28, 28), (4, 32, 14, 14), (3, 64, 7, 7), (2, 3, 5, 6),
                                   (1, 24, 9, 2)])
def test_outputs_and_gradients_are_torchs(dtype, shape):
    x = torch.randn(shape).to(dtype).contiguous(memory_format=torch.channels_last)
    (y, gx), (y_ref, gx_ref) = _both(x)
    assert y.dtype == dtype and y.shape == y_ref.shape
    assert torch.equal(y, y_ref)
    assert torch.equal(gx, gx_ref)  # odd sizes: the uncovered row and column get zeros


def test_ties_and_nans_follow_torchs_rule():
    # bf16 rounds many values to the same number: the first maximum wins, as in torch
    x = torch.randint(0, 3, (4, 16, 8, 8)).to(torch.bfloat16)
    x[0, 0, 0, 1] = float("nan")
    x[1, 3, 5, 4] = float("nan")
    x[1, 3, 5, 5] = float("nan")
    x = x.contiguous(memory_format=torch.channels_last)
    (y, gx), (y_ref, gx_ref) = _both(x)
    assert torch.equal(y.isnan(), y_ref.isnan()) and y.isnan().sum() == 2
    assert torch.equal(y.nan_to_num(), y_ref.nan_to_num())
    assert torch.equal(gx, gx_ref)


def test_an_nchw_input_and_inference_mode():
    x = torch.randn(2, 8, 6, 6)  # plain NCHW: the kernel works on a channels_last copy
    with torch.inference_mode():
        y = run_pool(_pool().pool, x)
    assert torch.equal(y, F.max_pool2d(x, 2))


def test_a_hook_on_the_pool_sees_torchs_pool_run():
    module = _pool()
    x = torch.randn(2, 16, 8, 8).contiguous(memory_format=torch.channels_last)
    assert module.two_by_two and run_pool(module.pool, x) is not None
    seen = []
    handle = module.pool.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    try:
        assert run_pool(module.pool, x) is None
        module(x)
    finally:
        handle.remove()
    assert seen == [torch.Size([2, 16, 4, 4])]


def test_other_pools_are_torchs():
    assert not MaxPool2d((3, 3), (2, 2), (0, 0, 0, 0)).two_by_two
    assert not MaxPool2d((2, 2), (1, 1), (0, 0, 0, 0)).two_by_two
    assert not MaxPool2d((2, 2), (2, 2), (0, 1, 0, 1)).two_by_two  # Keras 'same' on odd sizes
