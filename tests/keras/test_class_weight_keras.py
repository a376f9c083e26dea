"""cnnkit.keras's fit(class_weight=...) reports Keras 3's losses: the training loss weighted by
class, the validation loss not. Keras's own numbers come from tests/fixtures/keras_class_weight/
(made with real Keras 3, torch backend, by make.py there): the same data, starting weights,
SGD steps without shuffling; the histories must agree to 1e-6 for every epoch."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cnnkit.errors import CnnkitError

FIXTURE = Path(__file__).parents[1] / "fixtures" / "keras_class_weight" / "cases.json"
CASES = json.loads(FIXTURE.read_text())["cases"]


def _model(case):
    from cnnkit.keras import Input, Sequential, layers, losses, optimizers

    model = Sequential([Input((6, 6, 1)), layers.Conv2D(4, 3, activation="relu"),
                        layers.Flatten(), layers.Dense(case["units"], activation=case["activation"])])
    model.set_weights([np.asarray(w, dtype="float32") for w in case["weights"]])
    args = {k: v for k, v in case["loss"].items() if k != "name"}
    loss = {"sparse_categorical_crossentropy": losses.SparseCategoricalCrossentropy,
            "categorical_crossentropy": losses.CategoricalCrossentropy,
            "binary_crossentropy": losses.BinaryCrossentropy}[case["loss"]["name"]](**args)
    model.compile(optimizer=optimizers.SGD(learning_rate=case["learning_rate"]), loss=loss,
                  metrics=["accuracy"])
    return model


def _targets(y, form, k):
    y = np.asarray(y)
    if form == "one_hot":
        return np.eye(k, dtype="float32")[y]
    return y.reshape(-1, 1).astype("float32") if form == "column" else y


def _data(case):
    k = max(2, case["units"])
    x, xv = (np.asarray(case[n], dtype="float32") for n in ("x", "x_val"))
    return x, _targets(case["y"], case["targets"], k), xv, _targets(case["y_val"],
                                                                     case["targets"], k)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_fit_with_class_weight_reports_keras_losses(case):
    x, y, xv, yv = _data(case)
    weights = {int(k): w for k, w in case["class_weight"].items()}
    history = _model(case).fit(x, y, batch_size=case["batch_size"], epochs=case["epochs"],
                               shuffle=False, class_weight=weights, verbose=0,
                               validation_data=(xv, yv))
    for key, expected in case["history"].items():
        np.testing.assert_allclose(history.history[key], expected, rtol=0, atol=1e-6,
                                   err_msg=key)


def test_without_class_weight_the_loss_is_not_keras_weighted_one():
    """The fixture's figures hold only with the weights: the same fit without them is off by
    far more than the tolerance (the rare classes weigh 2.5x and 5x), its val_loss too."""
    case = CASES[0]
    x, y, xv, yv = _data(case)
    plain = _model(case).fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0,
                             validation_data=(xv, yv)).history
    assert abs(plain["loss"][0] - case["history"]["loss"][0]) > 0.1
    assert abs(plain["val_loss"][0] - case["history"]["val_loss"][0]) > 1e-4


@pytest.mark.parametrize("bad", [{"0": 1.0}, {0: "heavy"}, [1.0, 2.0], {-1: 2.0}])
def test_a_bad_class_weight_is_one_clear_line(bad):
    case = CASES[0]
    x, y, _, _ = _data(case)
    with pytest.raises(CnnkitError, match=r"class_weight=.*valid: a dict \{class id: weight\}"):
        _model(case).fit(x, y, epochs=1, verbose=0, class_weight=bad)
