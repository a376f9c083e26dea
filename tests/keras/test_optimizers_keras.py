"""Every optimizer in cnnkit's one registry takes real Keras 3's steps (torch backend) with the
same settings: step by step on given gradients, and through `cnnkit.Sequential.compile` +
`fit`, which must keep every setting of an optimizer object (it once kept only the learning
rate, so SGD lost its momentum and Nesterov)."""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import numpy as np
import pytest
import torch

import cnnkit
from cnnkit.keras import optimizers

CASES = [  # (class name, settings): Keras's defaults, then every argument each class takes
    ("SGD", {}),
    ("SGD", dict(learning_rate=0.05, momentum=0.9)),
    ("SGD", dict(learning_rate=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(learning_rate=0.05, momentum=0.5, weight_decay=0.1, clipnorm=0.5)),
    ("Adam", {}),
    ("Adam", dict(learning_rate=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-5, amsgrad=True,
                  weight_decay=0.05)),
    ("AdamW", {}),
    ("AdamW", dict(learning_rate=0.01, weight_decay=0.1, global_clipnorm=1.0)),
    ("Adagrad", dict(learning_rate=0.05)),
    ("Adagrad", dict(learning_rate=0.05, initial_accumulator_value=0.5, epsilon=1e-4,
                     clipvalue=0.3)),
    ("RMSprop", {}),
    ("RMSprop", dict(learning_rate=0.01, rho=0.8, momentum=0.5, epsilon=1e-6, centered=True,
                     weight_decay=0.05)),
    ("Adadelta", {}),
    ("Adadelta", dict(learning_rate=1.0, rho=0.9, epsilon=1e-6, weight_decay=0.05)),
    ("Adamax", {}),
    ("Adamax", dict(learning_rate=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-5, clipnorm=0.5)),
    ("Nadam", {}),
    ("Nadam", dict(learning_rate=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-5,
                   weight_decay=0.05)),
    ("Ftrl", dict(learning_rate=0.05)),
    ("Ftrl", dict(learning_rate=0.05, learning_rate_power=-0.7, initial_accumulator_value=0.3,
                  l1_regularization_strength=0.01, l2_regularization_strength=0.02,
                  l2_shrinkage_regularization_strength=0.03, beta=0.1)),
    ("Lion", {}),
    ("Lion", dict(learning_rate=0.01, beta_1=0.8, beta_2=0.9, global_clipnorm=1.0)),
]
IDS = [f"{name}-{'-'.join(args) or 'defaults'}" for name, args in CASES]
from _optimizer_steps import start_and_grads as _start_and_grads  # tests/keras, beside this file


@pytest.mark.parametrize("name, settings", CASES, ids=IDS)
def test_each_step_is_keras_s(name, settings):
    import keras

    assert keras.backend.backend() == "torch"
    start, grads = _start_and_grads(5)
    variables = [keras.Variable(w.copy()) for w in start]
    theirs = getattr(keras.optimizers, name)(**settings)
    params = [torch.nn.Parameter(torch.tensor(w.copy())) for w in start]
    ours = getattr(optimizers, name)(**settings).build(params)
    for step, step_grads in enumerate(grads):
        theirs.apply_gradients([(torch.tensor(g), v) for g, v in zip(step_grads, variables)])
        for p, g in zip(params, step_grads):
            p.grad = torch.tensor(g)
        ours.step()
        ours.zero_grad()
        for p, v in zip(params, variables):
            np.testing.assert_allclose(p.detach().numpy(), keras.ops.convert_to_numpy(v),
                                       rtol=1e-5, atol=1e-6, err_msg=f"step {step + 1}")


@pytest.mark.parametrize("name, settings", [c for c in CASES if c[1]],
                         ids=[i for i, c in zip(IDS, CASES) if c[1]])
def test_sequential_compile_keeps_every_setting(tmp_path, name, settings):
    """cnnkit.Sequential trained by cnnkit's own Trainer (full batches, fp32) with a Keras
    optimizer object ends with the weights Keras's fit gives from the same start."""
    import keras

    keras.utils.set_random_seed(1)
    ref = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                            keras.layers.Dense(3, activation="softmax")])
    ref.save(tmp_path / "start.keras")
    ours = cnnkit.load(tmp_path / "start.keras")
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (30, 8, 8, 1), dtype=np.uint8)
    y = np.arange(30) % 3
    ref.compile(optimizer=getattr(keras.optimizers, name)(**settings),
                loss="sparse_categorical_crossentropy")
    ref.fit(x.astype("float32") / 255, y, batch_size=30, epochs=4, shuffle=False, verbose=0)
    ours.compile(optimizer=getattr(optimizers, name)(**settings),
                 loss="sparse_categorical_crossentropy", precision="fp32", threads=1)
    ours.fit(x, y, epochs=4, batch_size=30, verbose=0, seed=0)
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in ref.layers[-1].weights)
    dense = ours.layer_module(ours.layer_names()[-1])
    np.testing.assert_allclose(dense.linear.weight.detach().numpy().T, kernel, atol=2e-6)
    np.testing.assert_allclose(dense.linear.bias.detach().numpy(), bias, atol=2e-6)


@pytest.mark.parametrize("name", optimizers.REGISTRY)
def test_cnnkit_train_takes_the_same_steps_by_name(name):
    """`cnnkit train --optimizer NAME` (make_optimizer, with its defaults) is Keras's NAME: once
    `adam` was torch's update there and Keras's in cnnkit.keras."""
    import keras

    from cnnkit.train.optim import make_optimizer

    start, grads = _start_and_grads(4)
    variables = [keras.Variable(w.copy()) for w in start]
    theirs = keras.optimizers.get(name)
    params = [torch.nn.Parameter(torch.tensor(w.copy())) for w in start]
    ours = make_optimizer(name, params)
    for step_grads in grads:
        theirs.apply_gradients([(torch.tensor(g), v) for g, v in zip(step_grads, variables)])
        for p, g in zip(params, step_grads):
            p.grad = torch.tensor(g)
        ours.step()
    for p, v in zip(params, variables):
        np.testing.assert_allclose(p.detach().numpy(), keras.ops.convert_to_numpy(v),
                                   rtol=1e-5, atol=1e-7)
