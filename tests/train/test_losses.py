import math

import pytest
import torch
import torch.nn.functional as F

from cnnkit.errors import CnnkitError
from cnnkit.train.losses import accuracy, make_loss

torch.manual_seed(0)
LOGITS = torch.randn(16, 10) * 3
Y = torch.randint(0, 10, (16,))


def test_softmax_is_applied_once():
    # Keras: Dense(10, softmax) + crossentropy == -log(softmax(z)[y]); never softmax twice.
    loss = make_loss("sparse_categorical_crossentropy", 10, "softmax")(LOGITS, Y)
    expected = -torch.log(torch.softmax(LOGITS, 1)[torch.arange(16), Y]).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_categorical_equals_sparse_and_smoothing_matches_keras():
    sparse = make_loss("sparse_categorical_crossentropy", 10, "softmax", 0.1)(LOGITS, Y)
    onehot = make_loss("categorical_crossentropy", 10, "softmax", 0.1)(LOGITS, Y)
    target = F.one_hot(Y, 10).float() * 0.9 + 0.01  # Keras: y*(1-ls) + ls/K
    keras = -(target * F.log_softmax(LOGITS, 1)).sum(1).mean()
    assert sparse.item() == pytest.approx(keras.item(), rel=1e-5)
    assert onehot.item() == pytest.approx(keras.item(), rel=1e-5)


def test_stable_for_huge_logits():
    logits = torch.tensor([[1000.0, -1000.0], [-1000.0, 1000.0]])
    loss = make_loss("sparse_categorical_crossentropy", 2, "softmax")(logits, torch.tensor([1, 1]))
    assert math.isfinite(loss.item()) and loss.item() == pytest.approx(1000.0)


def test_sigmoid_outputs_are_normalized_like_keras():
    p = torch.sigmoid(LOGITS)
    keras = -torch.log((p / p.sum(1, keepdim=True))[torch.arange(16), Y]).mean()
    loss = make_loss("categorical_crossentropy", 10, "sigmoid")(LOGITS, Y)
    assert loss.item() == pytest.approx(keras.item(), rel=1e-5)


@pytest.mark.parametrize("units,act", [(1, "sigmoid"), (2, "softmax"), (2, "sigmoid")])
def test_binary_crossentropy(units, act):
    z = torch.randn(8, units)
    y = torch.randint(0, 2, (8,))
    loss = make_loss("binary_crossentropy", 2, act)(z, y).item()
    if units == 1:
        p = torch.sigmoid(z[:, 0])
        expected = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    elif act == "softmax":  # per-unit BCE of complementary probabilities = cross-entropy
        expected = F.cross_entropy(z, y)
    else:
        p, t = torch.sigmoid(z), F.one_hot(y, 2).float()
        expected = -(t * p.log() + (1 - t) * (1 - p).log()).mean()
    assert loss == pytest.approx(expected.item(), rel=1e-5)


def test_binary_crossentropy_on_ten_classes_is_a_clear_error():
    with pytest.raises(CnnkitError, match="binary_crossentropy needs 2 classes; the data has 10"):
        make_loss("binary_crossentropy", 10, "softmax")


def test_binary_on_one_unit_softmax_is_an_error():
    with pytest.raises(CnnkitError, match="sigmoid"):
        make_loss("binary_crossentropy", 2, "softmax")(torch.randn(4, 1), torch.zeros(4).long())


def test_mse_on_probabilities_vs_one_hot():
    loss = make_loss("mse", 10, "softmax")(LOGITS, Y)
    expected = ((torch.softmax(LOGITS, 1) - F.one_hot(Y, 10)) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_unknown_loss_and_wrong_units():
    with pytest.raises(CnnkitError, match="unknown loss 'crossentropy'; valid: sparse_"):
        make_loss("crossentropy", 10)
    with pytest.raises(CnnkitError, match="outputs 5 units but the data has 10 classes"):
        make_loss("sparse_categorical_crossentropy", 10)(torch.randn(3, 5), torch.zeros(3).long())


def test_accuracy():
    assert accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0])) == 0.5
    assert accuracy(torch.tensor([[2.0], [-1.0]]), torch.tensor([1, 0])) == 1.0  # sigmoid unit
