"""`load_model` returns a model compiled as it was saved, as Keras's does: from a file real Keras
3 (torch backend) wrote after compile(), and from cnnkit.keras's own saves (.keras, .h5, a
directory), which real Keras reads compiled too. `compile=False` leaves it uncompiled."""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import numpy as np
import pytest

import cnnkit
from cnnkit.errors import CnnkitError


def _data(n=60):
    rng = np.random.default_rng(3)
    x = rng.random((n, 8, 8, 1), dtype=np.float32)
    return x, np.arange(n) % 3


def _keras_model(keras, activation="softmax"):
    keras.utils.set_random_seed(4)
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                             keras.layers.Flatten(), keras.layers.Dense(3, activation=activation)])


@pytest.mark.parametrize("name", ["m.keras", "m.h5"])  # .h5: legacy Keras's training_config
def test_a_file_real_keras_compiled_loads_compiled(tmp_path, name):
    import keras

    from cnnkit.keras import optimizers, saving

    x, y = _data()
    ref = _keras_model(keras)
    ref.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
                loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    ref.fit(x, y, epochs=2, batch_size=20, verbose=0)  # weights Keras trained
    ref.save(tmp_path / name)
    want = ref.evaluate(x, y, verbose=0)

    model = saving.load_model(tmp_path / name)
    got = model.evaluate(x, y, verbose=0)  # no compile() call
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert isinstance(model.optimizer, optimizers.SGD)
    assert (model.optimizer.learning_rate, model.optimizer.momentum,
            model.optimizer.nesterov) == (0.05, 0.9, True)
    assert model.evaluate(x, y, verbose=0, return_dict=True).keys() == {"loss", "accuracy"}


def test_loss_and_metric_objects_come_back(tmp_path):
    """A loss object with from_logits=True and a metric object, as Keras serializes them."""
    import keras

    from cnnkit.keras import models

    x, y = _data()
    ref = _keras_model(keras, activation=None)
    ref.compile(optimizer=keras.optimizers.Adam(learning_rate=0.002, beta_2=0.99),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=[keras.metrics.SparseCategoricalAccuracy()])
    ref.save(tmp_path / "m.keras")
    want = ref.evaluate(x, y, verbose=0, return_dict=True)

    model = models.load_model(tmp_path / "m.keras")
    got = model.evaluate(x, y, verbose=0, return_dict=True)
    assert got.keys() == want.keys() == {"loss", "sparse_categorical_accuracy"}
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-4)
    assert model.optimizer.get_config()["beta_2"] == 0.99
    assert model.optimizer.learning_rate == 0.002


@pytest.mark.parametrize("where", ["m.keras", "m.h5", "m_dir"])
def test_cnnkit_keras_saves_come_back_compiled(tmp_path, where):
    from cnnkit.keras import layers, models, optimizers

    x, y = _data()
    model = models.Sequential([layers.Input((8, 8, 1)), layers.Conv2D(4, 3, activation="relu"),
                               layers.Flatten(), layers.Dense(3, activation="softmax")])
    model.compile(optimizer=optimizers.RMSprop(learning_rate=0.003, momentum=0.5),
                  loss="sparse_categorical_crossentropy", metrics=["acc"])
    model.fit(x, y, epochs=1, batch_size=20, verbose=0)
    model.save(tmp_path / where)
    again = models.load_model(tmp_path / where)
    assert again.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0),
                                                            abs=1e-6)
    assert again.optimizer.get_config() == model.optimizer.get_config()
    assert list(again.evaluate(x, y, verbose=0, return_dict=True)) == ["loss", "acc"]


def test_real_keras_reads_cnnkit_s_file_compiled(tmp_path):
    import keras

    from cnnkit.keras import layers, models, optimizers

    model = models.Sequential([layers.Input((8, 8, 1)), layers.Flatten(),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizer=optimizers.Nadam(learning_rate=0.01, beta_1=0.8),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.save(tmp_path / "m.keras")
    theirs = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(theirs.optimizer, keras.optimizers.Nadam)
    assert float(theirs.optimizer.learning_rate) == pytest.approx(0.01)
    assert theirs.optimizer.beta_1 == 0.8
    x, y = _data()
    np.testing.assert_allclose(theirs.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0),
                               atol=1e-5)


def test_compile_false_and_files_saved_before_compile_stay_uncompiled(tmp_path):
    import keras

    from cnnkit.keras import saving

    ref = _keras_model(keras)
    ref.save(tmp_path / "plain.keras")
    ref.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    ref.save(tmp_path / "compiled.keras")
    x, y = _data()
    for model in (saving.load_model(tmp_path / "plain.keras"),
                  saving.load_model(tmp_path / "compiled.keras", compile=False)):
        with pytest.raises(CnnkitError, match=r"you must call compile\(\) before evaluate"):
            model.evaluate(x, y)


def test_a_compile_setting_cnnkit_lacks_is_a_warning_and_no_compile(tmp_path):
    import keras

    from cnnkit.keras import saving

    ref = _keras_model(keras)
    ref.compile(optimizer=keras.optimizers.Adam(use_ema=True), loss="mse")
    ref.save(tmp_path / "ema.keras")
    with pytest.warns(UserWarning, match=r"compile\(\) was not restored \(optimizer Adam: "
                                         r"use_ema=True is not supported\)"):
        model = saving.load_model(tmp_path / "ema.keras")
    assert model.compiled_state is None


def test_keras_saving_names():
    import cnnkit.keras
    from cnnkit.keras import saving
    from cnnkit.layers import Layer

    assert cnnkit.keras.saving.load_model is saving.load_model
    assert saving.get_custom_objects()["Conv2D"] is cnnkit.layers.Conv2D

    @saving.register_keras_serializable(package="mine")
    class Doubling(Layer):
        def build(self, shape):
            return shape

    assert saving.get_custom_objects()["Doubling"] is Doubling
    with pytest.raises(CnnkitError, match="register_keras_serializable: .* is not a layer class"):
        saving.register_keras_serializable()(dict)
    with pytest.raises(CnnkitError, match="register_keras_serializable: .*my_loss.* is not a "
                                          "layer class"):
        def my_loss(y_true, y_pred):
            return y_pred
        saving.load_model("any.keras", custom_objects={"my_loss": my_loss})
