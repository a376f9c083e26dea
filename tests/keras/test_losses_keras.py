"""One loss math: cnnkit.keras's losses (Keras's arguments and target forms) are cnnkit's core
losses, and both give real Keras 3's numbers (torch backend) for every kind of output: softmax,
sigmoid, a layer without activation (probabilities as given), and logits (`from_logits`)."""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import numpy as np
import pytest
import torch

from cnnkit.keras import losses
from cnnkit.train.losses import make_loss

torch.manual_seed(0)
LOGITS = torch.randn(12, 3) * 2
IDS = torch.arange(12) % 3
ONE_HOT = torch.nn.functional.one_hot(IDS, 3).float()
BITS = (torch.rand(12, 3) > 0.5).float()


def _outputs(activation):
    """What the Keras model outputs for our logits."""
    if activation == "softmax":
        return LOGITS.softmax(1)
    if activation == "sigmoid":
        return LOGITS.sigmoid()
    if activation == "positive":  # a layer without activation whose outputs are positive
        return LOGITS.abs() + 0.1
    return LOGITS  # logits, with from_logits=True


CASES = [  # (class name, arguments, our model's activation, Keras's output form, targets)
    ("SparseCategoricalCrossentropy", {}, "softmax", "softmax", IDS),
    ("SparseCategoricalCrossentropy", {}, "sigmoid", "sigmoid", IDS),
    ("SparseCategoricalCrossentropy", {}, None, "positive", IDS),
    ("SparseCategoricalCrossentropy", {"from_logits": True}, None, "logits", IDS),
    ("CategoricalCrossentropy", {"label_smoothing": 0.1}, "softmax", "softmax", ONE_HOT),
    ("CategoricalCrossentropy", {}, "sigmoid", "sigmoid", ONE_HOT),
    ("CategoricalCrossentropy", {}, None, "positive", ONE_HOT),
    ("CategoricalCrossentropy", {"from_logits": True}, None, "logits", ONE_HOT),
    ("BinaryCrossentropy", {}, "sigmoid", "sigmoid", BITS),
    ("BinaryCrossentropy", {"label_smoothing": 0.2}, "softmax", "softmax", BITS),
    ("BinaryCrossentropy", {"from_logits": True}, None, "logits", BITS),
    ("MeanSquaredError", {}, "softmax", "softmax", ONE_HOT),
    ("MeanSquaredError", {}, "sigmoid", "sigmoid", BITS),
    ("MeanAbsoluteError", {}, None, "positive", ONE_HOT),
]


@pytest.mark.parametrize("name, args, activation, form, y", CASES,
                         ids=[f"{c[0]}-{c[3]}-{'-'.join(c[1])}" for c in CASES])
def test_the_same_loss_as_keras(name, args, activation, form, y):
    import keras

    expected = float(getattr(keras.losses, name)(**args)(y.numpy(), _outputs(form).numpy()))
    logits = _outputs(form) if form == "positive" else LOGITS  # what our network returns
    got = float(getattr(losses, name)(**args).compute(logits, activation, y))
    assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name, activation", [
    ("sparse_categorical_crossentropy", "softmax"), ("categorical_crossentropy", "sigmoid"),
    ("mse", "softmax"), ("mae", "sigmoid"), ("binary_crossentropy", "sigmoid")])
def test_cnnkit_train_s_loss_is_the_keras_namespace_s(name, activation):
    """The core's loss from class ids (what `cnnkit train --loss NAME` computes) is the Keras
    namespace's loss from the same targets in Keras's form."""
    if name == "binary_crossentropy":  # one sigmoid unit, two classes
        logits, ids = LOGITS[:, :1], IDS % 2
        target = ids.float().reshape(-1, 1)
    else:
        logits, ids = LOGITS, IDS
        target = IDS if name.startswith("sparse") else ONE_HOT
    core = make_loss(name, 2 if name == "binary_crossentropy" else 3, activation)(logits, ids)
    keras_form = losses.get(name).compute(logits, activation, target)
    assert float(core) == pytest.approx(float(keras_form), rel=1e-6)
