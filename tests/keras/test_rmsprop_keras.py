"""cnnkit's "rmsprop" (make_optimizer: `cnnkit train --optimizer rmsprop`, the seed004 recipe)
and cnnkit.keras's RMSprop take Keras 3's steps: real Keras (torch backend) and cnnkit start
from the same weights, get the same gradients, and must hold the same weights after each step.
Gradients are tiny on one tensor, where epsilon's place (inside the square root, as Keras
puts it, or after it, as torch does) decides the step size."""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import numpy as np
import pytest
import torch

from cnnkit.train.optim import make_optimizer

from _optimizer_steps import start_and_grads as _start_and_grads  # tests/keras, beside this file


def _keras_weights(keras, start, grads, **args):
    variables = [keras.Variable(w.copy()) for w in start]
    opt = keras.optimizers.RMSprop(**args)
    seen = []
    for step in grads:
        opt.apply_gradients([(torch.tensor(g), v) for g, v in zip(step, variables)])
        seen.append([np.array(keras.ops.convert_to_numpy(v)) for v in variables])
    return seen


def _cnnkit_weights(opt_factory, start, grads):
    params = [torch.nn.Parameter(torch.tensor(w.copy())) for w in start]
    opt = opt_factory(params)
    seen = []
    for step in grads:
        for p, g in zip(params, step):
            p.grad = torch.tensor(g)
        opt.step()
        opt.zero_grad()
        seen.append([p.detach().numpy().copy() for p in params])
    return seen


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_core_rmsprop_takes_keras_steps(momentum):
    import keras

    assert keras.backend.backend() == "torch"
    start, grads = _start_and_grads(5)
    expected = _keras_weights(keras, start, grads, learning_rate=0.01, momentum=momentum)
    # Keras's defaults (rho 0.9, epsilon 1e-7) come from make_optimizer itself
    got = _cnnkit_weights(lambda p: make_optimizer("rmsprop", p, lr=0.01, momentum=momentum),
                          start, grads)
    for step, (ours, theirs) in enumerate(zip(got, expected)):
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=f"step {step + 1}")


def test_keras_namespace_rmsprop_is_the_same_rule():
    import keras

    from cnnkit.keras import optimizers

    start, grads = _start_and_grads(3)
    expected = _keras_weights(keras, start, grads, learning_rate=0.003, rho=0.8, epsilon=1e-6)
    ours = optimizers.RMSprop(learning_rate=0.003, rho=0.8, epsilon=1e-6)
    got = _cnnkit_weights(ours.build, start, grads)
    for a, b in zip(got[-1], expected[-1]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_epsilon_inside_the_root_keeps_steps_small_where_gradients_are_tiny():
    """Keras's rule: the bias's gradients (1e-5) are far below sqrt(eps); its first step is
    about lr·|g|/sqrt(eps), not torch.optim's ~lr/sqrt(1 - rho) = 0.03 whatever |g| is."""
    start, grads = _start_and_grads(1)
    got = _cnnkit_weights(lambda p: make_optimizer("rmsprop", p, lr=0.01), start, grads)
    assert np.abs(got[0][1] - start[1]).max() < 1e-3
    assert np.abs(got[0][0] - start[0]).max() > 0.02  # gradients of size 1: full steps
