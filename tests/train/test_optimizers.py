"""cnnkit's optimizers save and resume their state exactly, still load what earlier versions
saved (torch.optim's layout), and never import torch._dynamo (the ~3 s that motivated them).
That each takes Keras's steps is tests/keras/test_optimizers_keras.py."""
import subprocess
import sys

import pytest
import torch

from cnnkit.errors import CnnkitError
from cnnkit.train.optim import make_optimizer
from cnnkit.train.optimizers import create

CASES = {  # name: (registry name, settings by Keras's names)
    "adam": ("adam", {}),
    "adam-amsgrad": ("adam", dict(learning_rate=0.01, beta_2=0.99, amsgrad=True,
                                  weight_decay=0.01)),
    "adamw": ("adamw", dict(learning_rate=0.01)),
    "adagrad": ("adagrad", dict(learning_rate=0.1, clipnorm=1.0)),
    "sgd": ("sgd", dict(learning_rate=0.1)),
    "sgd-nesterov": ("sgd", dict(learning_rate=0.1, momentum=0.9, nesterov=True,
                                 weight_decay=1e-3)),
    "rmsprop": ("rmsprop", dict(learning_rate=0.01)),
    "rmsprop-centered": ("rmsprop", dict(learning_rate=0.01, momentum=0.5, centered=True)),
    "adadelta": ("adadelta", dict(learning_rate=1.0)),
    "adamax": ("adamax", dict(learning_rate=0.01)),
    "nadam": ("nadam", dict(learning_rate=0.01)),  # its momentum schedule follows the step count
    "ftrl": ("ftrl", dict(learning_rate=0.1, l1_regularization_strength=0.01)),
    "lion": ("lion", dict(learning_rate=0.01)),
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


def _make(case, params):
    name, settings = CASES[case]
    return create(name, **settings).build(params)


@pytest.mark.parametrize("case", CASES)
def test_saved_state_resumes_exactly(case):
    """3 steps, state_dict, a fresh optimizer loads it, 3 more steps == 6 steps straight, with
    the rate changing every step as a schedule changes it."""
    lr = lambda i: 0.01 * (1 + i) / 4  # noqa: E731
    straight = _params()
    grads = _grads(straight, 6)
    _run(_make(case, straight), straight, grads, lr_at=lr)
    params = _params()
    opt = _make(case, params)
    _run(opt, params, grads[:3], lr_at=lr)
    resumed = [torch.nn.Parameter(p.detach().clone()) for p in params]
    again = _make(case, resumed)
    again.load_state_dict(opt.state_dict())
    assert again.param_groups[0]["lr"] == lr(2)
    _run(again, resumed, grads[3:], lr_at=lambda i: lr(i + 3))
    for x, y in zip(straight, resumed):
        assert torch.equal(x, y), case


@pytest.mark.parametrize("name, theirs", [
    ("adam", lambda p: torch.optim.Adam(p, lr=0.01, eps=1e-7, fused=True)),
    ("sgd", lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, foreach=False)),
])
def test_a_state_saved_by_torch_optim_resumes(name, theirs):
    """Training states written before cnnkit had its own optimizers hold torch.optim's state:
    loaded, the next steps are the ones cnnkit would take from the same moments (SGD's torch
    buffer b is Keras's velocity -lr·b)."""
    grads = _grads(_params(), 4)
    old, ours = _params(), _params()
    opt = theirs(old)
    _run(opt, old, grads[:3])
    mine = make_optimizer(name, ours, lr=0.01, momentum=0.9 if name == "sgd" else 0.0)
    _run(mine, ours, grads[:3])
    for a, b in zip(old, ours):  # the same start for the last step
        a.data.copy_(b.data)
    again = make_optimizer(name, old, lr=0.01, momentum=0.9 if name == "sgd" else 0.0)
    again.load_state_dict(opt.state_dict())
    _run(again, old, grads[3:])
    _run(mine, ours, grads[3:])
    for a, b in zip(old, ours):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_make_optimizer_does_not_import_dynamo():
    code = ("import sys, torch\n"
            "from cnnkit.train.optim import make_optimizer\n"
            "p = [torch.nn.Parameter(torch.zeros(3))]\n"
            "from cnnkit.train.optimizers import names\n"
            "for name in names():\n"
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
