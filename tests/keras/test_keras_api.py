"""Keras's semantics in cnnkit.keras, where they differ from cnnkit's own API: evaluate's
return value, metrics, arrays used as given, the batch axis, Keras's argument names, and one
clear error for each bad call. Numbers are checked against real Keras (torch backend) and
against tests/fixtures/keras_reference/."""
from __future__ import annotations

import json
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest

from cnnkit.errors import CnnkitError
from cnnkit.keras import callbacks, layers, losses, models, optimizers, regularizers
from cnnkit.keras.utils import set_random_seed, to_categorical

RNG = np.random.default_rng(0)
X = RNG.random((40, 8, 8, 1)).astype("float32")
Y = np.arange(40) % 3


def small(**conv):
    set_random_seed(0)
    return models.Sequential([layers.Input((8, 8, 1)), layers.Conv2D(4, 3, activation="relu", **conv),
                              layers.Flatten(), layers.Dense(3, activation="softmax")])


def test_evaluate_returns_loss_list_or_dict_as_keras():
    model = small()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    loss = model.evaluate(X, Y, verbose=0)
    assert isinstance(loss, float)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    test_loss, test_acc = model.evaluate(X, Y, verbose=0)
    assert test_loss == loss and 0 <= test_acc <= 1
    assert test_acc == np.mean(model.predict(X, verbose=0).argmax(1) == Y)
    assert model.evaluate(X, Y, verbose=0, return_dict=True) == {"accuracy": test_acc, "loss": loss}


def test_history_carries_the_compiled_metrics_and_validation_split_is_the_last_part():
    model = small()
    model.compile(optimizer=optimizers.Adam(learning_rate=1e-2), loss="categorical_crossentropy",
                  metrics=["acc"])
    history = model.fit(X, to_categorical(Y), epochs=2, batch_size=8, validation_split=0.25,
                        verbose=0)
    assert set(history.history) == {"acc", "loss", "val_acc", "val_loss"}
    assert len(history.history["val_loss"]) == 2 and history.epoch == [0, 1]
    # Keras validates on the last 25% of the arrays, untouched by training
    val = model.evaluate(X[30:], to_categorical(Y[30:]), verbose=0, return_dict=True)
    assert val["loss"] == pytest.approx(history.history["val_loss"][-1], abs=1e-6)
    assert val["acc"] == history.history["val_acc"][-1]


def test_raw_pixels_are_used_as_given():
    model = models.Sequential([layers.Conv2D(1, 1, use_bias=False, input_shape=(2, 2, 1))])
    model.set_weights([np.ones((1, 1, 1, 1), "float32")])
    x = np.array([[[[0.0], [255.0]], [[17.0], [3.5]]]], "float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)  # no /255, no rounding


def test_predict_needs_the_batch_axis_not_a_grayscale_channel_axis():
    model = small()
    with pytest.raises(CnnkitError, match=r"one image without its batch axis.*np.expand_dims"):
        model.predict(X[0])
    assert model.predict(np.expand_dims(X[0], 0), verbose=0).shape == (1, 3)
    # (N, 8, 8) grayscale arrays, as keras.datasets.mnist gives them: the channel axis is added
    np.testing.assert_array_equal(model.predict(X[..., 0], verbose=0), model.predict(X, verbose=0))


def test_an_input_without_channel_axis_as_tensorflows_first_tutorial():
    """tensorflow.org's beginner quickstart, imports changed: Flatten(input_shape=(28, 28)),
    (N, 28, 28) arrays, logits, then Sequential([model, Softmax()]) for probabilities."""
    model = models.Sequential([layers.Flatten(input_shape=(8, 8)), layers.Dense(16, activation="relu"),
                               layers.Dropout(0.2), layers.Dense(3)])
    assert model.layer_infos()[0].output_shape == (64,)  # Keras's (None, 64)
    model.compile(optimizer="adam", loss=losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(X[..., 0], Y, epochs=1, verbose=0)
    logits = model.predict(X[..., 0], verbose=0)
    probability_model = models.Sequential([model, layers.Softmax()])
    probs = probability_model.predict(X[..., 0], verbose=0)
    e = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(1, keepdims=True), atol=1e-6)
    assert probability_model.count_params() == model.count_params()


@pytest.mark.parametrize("call, message", [
    (lambda: layers.Conv2D(32, 3, activaton="relu"), r"Conv2D: unknown argument activaton='relu'; valid: .*activation"),
    (lambda: layers.Dense(10, units2=3), r"Dense: unknown argument units2=3"),
    (lambda: models.Sequential([layers.Conv2D(8, 3, input_shape=(8, 8, 1)),
                                layers.Conv2D(8, 3, input_shape=(6, 6, 8))]),
     r"Conv2D: input_shape=\(6, 6, 8\) is only for the first layer"),
    (lambda: small().compile(optimizer="adam", loss="mse", metric=["accuracy"]),
     r"compile\(\) got an unknown argument metric=\['accuracy'\]; valid: optimizer, loss"),
    (lambda: small().compile(optimizer="adma", loss="mse"), r"unknown optimizer 'adma'; valid: SGD, Adagrad, RMSprop, Adam, AdamW, Adadelta, Adamax, Nadam, Ftrl, Lion"),
    (lambda: optimizers.SGD(learning_rate=0.1, amsgrad=True), r"amsgrad applies to adam and adamw, not sgd"),
    (lambda: optimizers.Adam(beta_1=1.5), r"beta_1=1.5 is out of range; valid: a number >= 0 and < 1"),
    (lambda: optimizers.Adam(lr=0.01), r"unknown argument lr=0.01; Keras 3 calls it learning_rate="),
    (lambda: small().compile(optimizer="adam", loss="hinge"), r"unknown loss 'hinge'"),
    (lambda: small().compile(optimizer="adam", loss="mse", metrics=["auc"]), r"unknown metric 'auc'"),
    (lambda: small().fit(X, Y, epochs=1), r"you must call compile\(\) before fit\(\)"),
    (lambda: layers.Conv2D(8, 3, data_format="channels_first"), r"data_format='channels_first' is not supported"),
    (lambda: callbacks.EarlyStopping(mode="maximum"), r"unknown mode 'maximum'"),
])
def test_bad_calls_are_one_clear_line(call, message):
    with pytest.raises(CnnkitError, match=message) as e:
        call()
    assert "\n" not in str(e.value)


def test_unknown_fit_keyword_is_an_error_at_the_call():
    model = small()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(CnnkitError, match=r"fit\(\) got an unknown argument epoch=3; valid: x, y, batch_size"):
        model.fit(X, Y, epoch=3)


def test_keras_names_and_defaults():
    assert layers.LeakyReLU().negative_slope == 0.3  # Keras 3's default (cnnkit's own: 0.01)
    assert layers.LeakyReLU(alpha=0.1).negative_slope == 0.1  # Keras 2's name for it
    model = models.Sequential()
    model.add(layers.Dense(4, input_dim=12, activation="relu", name="hidden"))
    model.add(layers.Dense(1, activation="sigmoid"))
    assert model.get_layer("hidden") is model.layers[0] and model.count_params() == 57
    model.compile(optimizer="RMSprop", loss="binary_crossentropy", metrics=["accuracy"])
    assert isinstance(model.optimizer, optimizers.RMSprop)
    v = RNG.random((20, 12)).astype("float32")
    history = model.fit(v, (v.sum(1) > 6).astype("float32"), epochs=1, verbose=0, shuffle=False)
    assert 0 <= history.history["accuracy"][0] <= 1
    assert model.predict(v, verbose=0).shape == (20, 1)  # Keras's output: one sigmoid unit


def test_regularizer_adds_its_penalty_to_the_loss():
    plain, reg = small(), small(kernel_regularizer=regularizers.l2(0.01))
    reg.set_weights(plain.get_weights())
    for m in (plain, reg):
        m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    kernel = plain.layers[0].get_weights()[0]
    penalty = 0.01 * float((kernel.astype("float64") ** 2).sum())
    assert reg.evaluate(X, Y, verbose=0) == pytest.approx(plain.evaluate(X, Y, verbose=0) + penalty, rel=1e-6)
    l1 = small(kernel_regularizer=regularizers.l1_l2(l1=0.01, l2=0.0))
    l1.set_weights(plain.get_weights())
    l1.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    expected = plain.evaluate(X, Y, verbose=0) + 0.01 * float(np.abs(kernel).sum())
    assert l1.evaluate(X, Y, verbose=0) == pytest.approx(expected, rel=1e-6)


def test_trainable_false_freezes_a_layer_and_callbacks_reach_the_model(tmp_path):
    seen = []
    model = small()
    model.layers[0].trainable = False
    model.summary(print_fn=lambda line, **kw: seen.append(line))
    assert any("Non-trainable params: 40" in line for line in seen)  # the conv's 4 × (9 + 1)
    seen.clear()
    before = [w.copy() for w in model.get_weights()]

    class StopAfterTwo(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((self.model.get_layer("dense").units, sorted(logs)))
            if epoch == 1:
                self.model.stop_training = True

    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    checkpoint = callbacks.ModelCheckpoint(filepath=str(tmp_path / "best.keras"), monitor="val_accuracy",
                                           mode="max", save_best_only=True, verbose=1)
    history = model.fit(X, Y, epochs=5, verbose=0, validation_data=(X, Y),
                        callbacks=[StopAfterTwo(), checkpoint])
    after = model.get_weights()
    np.testing.assert_array_equal(after[0], before[0])  # the frozen conv kernel
    assert not np.array_equal(after[2], before[2])  # the dense kernel trained
    assert len(history.history["loss"]) == 2
    assert seen[0] == (3, ["accuracy", "loss", "val_accuracy", "val_loss"])
    best = models.load_model(tmp_path / "best.keras")
    best.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    assert best.evaluate(X, Y, verbose=0)[1] == max(history.history["val_accuracy"])


@pytest.mark.parametrize("optimizer, args", [("SGD", {"learning_rate": 0.1, "momentum": 0.9}),
                                             ("RMSprop", {}), ("Adam", {}), ("AdamW", {}),
                                             ("Adagrad", {"learning_rate": 0.05})])
def test_same_numbers_as_real_keras(tmp_path, optimizer, args):
    """The same weights give Keras's loss and accuracy, and two epochs with Keras's
    optimizer (its defaults, its update rule) the same weights."""
    import keras

    keras.utils.set_random_seed(3)
    ref = keras.Sequential([keras.Input((8, 8, 1)),
                            keras.layers.Conv2D(4, 3, activation="relu", padding="same",
                                                kernel_regularizer=keras.regularizers.l2(0.01)),
                            keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
                            keras.layers.Dense(3, activation="softmax")])
    ref.save(tmp_path / "ref.keras")
    ours = models.load_model(tmp_path / "ref.keras")
    y = to_categorical(Y)
    for m, module in ((ref, keras.optimizers), (ours, optimizers)):
        m.compile(optimizer=getattr(module, optimizer)(**args), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    np.testing.assert_allclose(ours.evaluate(X, y, verbose=0), ref.evaluate(X, y, verbose=0), rtol=1e-5)
    h_ref = ref.fit(X, y, epochs=2, batch_size=20, shuffle=False, verbose=0)
    h_ours = ours.fit(X, y, epochs=2, batch_size=20, shuffle=False, verbose=0)
    np.testing.assert_allclose(h_ours.history["loss"], h_ref.history["loss"], rtol=1e-5)
    for a, b in zip(ours.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, atol=2e-6)


def test_keras_reference_shapes_and_values(keras_reference, keras_reference_values):
    """Keras's own output shapes and parameter counts for 150 models built from Keras's
    arguments, and its outputs for 30 layers with given weights."""
    cases = json.loads((keras_reference / "shapes.json").read_text())["cases"]
    for case in cases:
        model = models.Sequential([layers.Input(case["input_shape"])] + [
            getattr(layers, kind)(**args) for entry in case["layers"] for kind, args in entry.items()])
        infos = model.layer_infos()
        assert [list(i.output_shape) for i in infos] == [k["output_shape"] for k in case["keras"]]
        assert [i.trainable for i in infos] == [k["trainable_params"] for k in case["keras"]]
        assert model.count_params() == case["total_params"]
    values, arrays = keras_reference_values
    for case in values:
        key, ((kind, args),) = case["key"], case["layer"].items()
        x = arrays[f"{key}_x"]
        model = models.Sequential([getattr(layers, kind)(input_shape=x.shape[1:], **args)])
        if f"{key}_kernel" in arrays:
            model.set_weights([arrays[f"{key}_kernel"]] + ([arrays[f"{key}_bias"]] if f"{key}_bias" in arrays else []))
        np.testing.assert_allclose(model.predict(x, verbose=0), arrays[f"{key}_y"], atol=1e-4)


def test_early_stopping_restores_the_best_epochs_weights():
    model = small()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    at_end = []
    history = model.fit(X, Y, epochs=5, verbose=0, validation_data=(X, Y), callbacks=[
        callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: logs.update(val_loss=float(epoch))),
        callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: at_end.append(model.get_weights())),
        callbacks.EarlyStopping(patience=1, restore_best_weights=True)])
    assert history.history["val_loss"] == [0.0, 1.0]  # epoch 0 best; stopped after epoch 1
    for restored, best, last in zip(model.get_weights(), at_end[0], at_end[1]):
        np.testing.assert_array_equal(restored, best)
    assert not all(np.array_equal(a, b) for a, b in zip(at_end[0], at_end[1]))


def test_functional_chain_and_a_model_built_by_its_first_data():
    inputs = layers.Input(shape=(8, 8, 1))
    x = layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    outputs = layers.Dense(3, activation="softmax")(layers.Flatten()(x))
    model = models.Model(inputs, outputs)
    # Keras lists a functional model's input layer first
    assert [layer.name for layer in model.layers] == ["input_layer", "conv", "flatten", "dense"]
    assert model.get_layer("conv").output.shape == (None, 6, 6, 4)
    deferred = models.Sequential([layers.Conv2D(4, 3), layers.Flatten(), layers.Dense(3)])
    deferred.compile(optimizer="sgd", loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    deferred.fit(X, Y, epochs=1, verbose=0)  # Keras builds a model without Input on its data
    assert deferred.input_shape == (8, 8, 1) and deferred.count_params() == model.count_params()
    with pytest.raises(CnnkitError, match="not in inputs"):
        models.Model(inputs, layers.Dense(2)(layers.Input((4, 4, 1))))



def test_a_model_trained_on_raw_pixels_is_saved_as_such(tmp_path):
    """Seed 000 trains on raw 0-255 pixels; cnnkit's tools, which feed uint8 images, must give
    the saved model raw pixels too (and x / 255 to a model trained on x / 255)."""
    import cnnkit

    pixels = (X * 255).round().astype("uint8")
    for scale, name in ((1.0, "raw"), (1 / 255, "unit")):
        model = small()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(pixels * scale, Y, epochs=1, verbose=0)
        model.save(tmp_path / name)
        model.save(tmp_path / f"{name}.keras")
        expected = model.predict(pixels * scale, verbose=0)
        for path in (tmp_path / name, tmp_path / f"{name}.keras"):
            np.testing.assert_allclose(cnnkit.load(path).predict(pixels), expected, atol=1e-5)
