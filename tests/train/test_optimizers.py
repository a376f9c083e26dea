"""cnnkit's optimizers take exactly torch.optim's steps (same kernels), save and resume the same
state layout, and never import torch._dynamo (the ~3 s that motivated them)."""
import subprocess
import sys

import pytest
import torch

from cnnkit.train import optimizers as ours
from cnnkit.train.optim import make_optimizer

CASES = {  # name: (ours, torch.optim equivalent, kwargs)
    "adam": (ours.Adam, lambda p, **k: torch.optim.Adam(p, fused=True, **k),
             dict(lr=0.01, betas=(0.9, 0.999), eps=1e-7, weight_decay=0.0)),
    "adam-l2": (ours.Adam, lambda p, **k: torch.optim.Adam(p, fused=True, **k),
                dict(lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.01)),
    "adamw": (ours.AdamW, lambda p, **k: torch.optim.AdamW(p, fused=True, **k),
              dict(lr=0.01, betas=(0.9, 0.999), eps=1e-7, weight_decay=0.004)),
    "adagrad": (ours.Adagrad, lambda p, **k: torch.optim.Adagrad(p, fused=True, **k),
                dict(lr=0.1, initial_accumulator_value=0.1, eps=1e-7, weight_decay=0.001)),
    "sgd": (ours.SGD, lambda p, **k: torch.optim.SGD(p, foreach=False, **k), dict(lr=0.1)),
    "sgd-nesterov": (ours.SGD, lambda p, **k: torch.optim.SGD(p, foreach=False, **k),
                     dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    "rmsprop": (ours.RMSprop, lambda p, **k: torch.optim.RMSprop(p, foreach=True, **k),
                dict(lr=0.01, alpha=0.9, eps=1e-7)),
    "rmsprop-momentum": (ours.RMSprop, lambda p, **k: torch.optim.RMSprop(p, foreach=True, **k),
                         dict(lr=0.01, alpha=0.9, eps=1e-7, momentum=0.5, weight_decay=1e-3)),
}


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*shape, generator=g))
            for shape in [(8, 3, 3, 3), (8,), (10, 32)]]


def _grads(params, steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(p.shape, generator=g) for p in params] for _ in range(steps)]


def _run(opt, params, grads, lr_at=None):
    for i, step_grads in enumerate(grads):
        for p, grad in zip(params, step_grads):
            p.grad = grad.clone()
        if lr_at:
            opt.param_groups[0]["lr"] = lr_at(i)
        opt.step()
        opt.zero_grad()


@pytest.mark.parametrize("case", CASES)
def test_same_steps_as_torch_optim(case):
    mine, theirs, kwargs = CASES[case]
    a, b = _params(), _params()
    grads = _grads(a, 6)
    lr = lambda i: kwargs["lr"] * (1 + i) / 4  # noqa: E731  a schedule changes lr per step
    _run(mine(a, **kwargs), a, grads, lr_at=lr)
    _run(theirs(b, **kwargs), b, grads, lr_at=lr)
    for x, y in zip(a, b):
        assert torch.equal(x, y), case


@pytest.mark.parametrize("first", ["ours", "torch.optim"])
@pytest.mark.parametrize("case", CASES)
def test_saved_state_resumes_exactly(case, first):
    """3 steps, state_dict, a fresh optimizer loads it, 3 more steps == 6 steps straight; also
    from a torch.optim state (what cnnkit saved before these classes existed)."""
    mine, theirs, kwargs = CASES[case]
    straight = _params()
    grads = _grads(straight, 6)
    _run(mine(straight, **kwargs), straight, grads)
    params = _params()
    opt = (mine if first == "ours" else theirs)(params, **kwargs)
    _run(opt, params, grads[:3])
    resumed = [torch.nn.Parameter(p.detach().clone()) for p in params]
    again = mine(resumed, **kwargs)
    again.load_state_dict(opt.state_dict())
    assert again.param_groups[0]["lr"] == kwargs["lr"]
    _run(again, resumed, grads[3:])
    for x, y in zip(straight, resumed):
        assert torch.equal(x, y), case


def test_make_optimizer_does_not_import_dynamo():
    code = ("import sys, torch\n"
            "from cnnkit.train.optim import make_optimizer\n"
            "p = [torch.nn.Parameter(torch.zeros(3))]\n"
            "for name in ('sgd', 'adagrad', 'rmsprop', 'adam', 'adamw'):\n"
            "    o = make_optimizer(name, p, momentum=0.9 if name == 'sgd' else 0.0)\n"
            "    p[0].grad = torch.ones(3); o.step(); o.zero_grad(); o.load_state_dict(o.state_dict())\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_zero_grad_and_missing_grads():
    p = _params()
    opt = make_optimizer("adam", p, lr=0.1)
    before = [x.detach().clone() for x in p]
    p[0].grad = torch.ones_like(p[0])
    opt.step()  # only p[0] has a gradient: only p[0] moves
    assert not torch.equal(p[0], before[0]) and torch.equal(p[1], before[1])
    opt.zero_grad(set_to_none=False)
    assert torch.equal(p[0].grad, torch.zeros_like(p[0]))
    opt.zero_grad()
    assert p[0].grad is None
    with pytest.raises(ValueError, match="different set of parameters"):
        make_optimizer("adam", p[:2]).load_state_dict(opt.state_dict())
