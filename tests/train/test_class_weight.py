"""Class weights in the one loss math: each image's loss times its class's weight, averaged over
the batch (Keras's sum(w_i · l_i) / B), for every registered loss and output, with label
smoothing too; the training batches are weighted, validation is not."""
from __future__ import annotations

import pytest
import torch

from cnnkit.errors import CnnkitError
from cnnkit.model.sequential import Sequential
from cnnkit.train.config import TrainConfig
from cnnkit.train.losses import LOSSES, make_loss
from cnnkit.train.trainer import Trainer

torch.manual_seed(0)
LOGITS = torch.randn(9, 3) * 2
IDS = torch.tensor([0, 1, 2, 2, 0, 1, 1, 2, 2])
WEIGHTS = torch.tensor([0.5, 2.0, 4.0])


def _cases():
    for name in LOSSES:
        k = 2 if name == "binary_crossentropy" else 3
        for activation in ("softmax", "sigmoid", None):
            for smoothing in (0.0, 0.1):
                yield name, k, activation, smoothing


@pytest.mark.parametrize("name, k, activation, smoothing", list(_cases()))
def test_a_weighted_loss_is_the_mean_of_each_images_loss_times_its_weight(name, k, activation,
                                                                         smoothing):
    logits, ids, weights = LOGITS[:, :k], IDS % k, WEIGHTS[:k]
    plain = make_loss(name, k, activation, smoothing)
    weighted = make_loss(name, k, activation, smoothing, class_weight=weights)
    each = torch.stack([plain(logits[i:i + 1], ids[i:i + 1]) for i in range(len(ids))])
    expected = (each * weights[ids]).sum() / len(ids)  # Keras: not divided by the weights' sum
    assert weighted(logits, ids).item() == pytest.approx(expected.item(), rel=1e-6)
    ones = make_loss(name, k, activation, smoothing, class_weight=torch.ones(k))
    assert ones(logits, ids).item() == pytest.approx(plain(logits, ids).item(), rel=1e-6)


def test_one_weight_per_class():
    with pytest.raises(CnnkitError, match="class_weight has 2 weights for 3 classes"):
        make_loss("sparse_categorical_crossentropy", 3, class_weight=[1.0, 2.0])


@pytest.mark.parametrize("field, value, message", [
    ("class_weight", "heavy", r"class_weight='heavy' is not understood; valid: 'balanced', "
                              r"or a mapping"),
    ("class_weight", {"a": float("nan")}, r"weight nan of class 'a' is out of range"),
    ("sampler", "even", r"unknown sampler 'even'; valid: balanced"),
])
def test_train_config_checks_the_values(field, value, message):
    with pytest.raises(CnnkitError, match=message):
        TrainConfig(**{field: value})


def _fit(class_weight, lr):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images * 16).clamp(0, 255).to(torch.uint8).unsqueeze(-1)[:300]
    y = torch.tensor(d.target[:300])
    torch.manual_seed(0)
    model = Sequential.from_config({"input_shape": [8, 8, 1], "layers": [
        {"Flatten": {}}, {"Dense": {"units": 10, "activation": "softmax"}}]})
    model.class_names = [str(i) for i in range(10)]
    config = TrainConfig(epochs=1, batch_size=300, optimizer="sgd", lr=lr, seed=0, verbose=0,
                         threads=1, precision="fp32", class_weight=class_weight)
    return Trainer(model, config).fit(x, y, x, y).history


def test_the_training_loss_is_weighted_and_the_validation_loss_is_not():
    """One full batch: the logged loss is the weighted one of the starting weights; with a
    learning rate too small to move them, validation on the same images is the plain loss."""
    plain, weighted = _fit(None, 1e-12), _fit({"0": 9.0}, 1e-12)
    assert plain["val_loss"][0] == pytest.approx(plain["loss"][0], rel=1e-6)
    assert weighted["val_loss"][0] == pytest.approx(plain["val_loss"][0], rel=1e-6)
    assert weighted["loss"][0] > plain["loss"][0] * 1.2  # 30 images of 300 weigh 9x
