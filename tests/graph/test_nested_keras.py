"""Nested models in Keras files, against real Keras 3 (torch backend): a model holding an
augmentation Sequential and a frozen base model called with `training=False`, saved as `.keras`
by cnnkit, loads in Keras with cnnkit's predictions and trainable counts, and the same model
saved by Keras loads in cnnkit with Keras's; `Sequential([base, Softmax()])` both ways too."""
from __future__ import annotations

import json
import os
import zipfile

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import numpy as np
import pytest

from cnnkit import keras
from cnnkit.errors import CnnkitError

RNG = np.random.default_rng(0)
X = RNG.uniform(0, 1, (5, 10, 10, 3)).astype("float32")


def base_model(k, trainable=False):
    """A small base that is a graph (its skip keeps it one), with batch norm: frozen, as a
    transfer-learning base is."""
    L = k.layers
    inputs = k.Input((10, 10, 3))
    x = L.Conv2D(4, 3, padding="same")(inputs)
    y = L.Activation("relu")(L.BatchNormalization()(L.Conv2D(4, 3, padding="same")(x)))
    base = k.Model(inputs, L.Add()([x, y]), name="base")
    base.trainable = trainable
    return base


def transfer_model(k, augment=True):
    """keras.io's pattern: augmentation Sequential, a frozen base called with training=False,
    a new head."""
    L = k.layers
    inputs = k.Input((10, 10, 3))
    x = inputs
    if augment:  # built without an Input, as the tutorials write it
        x = k.Sequential([L.RandomFlip("horizontal"), L.RandomRotation(0.1)])(x)
    x = base_model(k)(x, training=False)
    outputs = L.Dense(2)(L.GlobalAveragePooling2D()(x))
    return k.Model(inputs, outputs)


def randomize(model):
    """Non-trivial weights everywhere: positive (batch norm's moving variance must be), kernels
    divided by their fan-in so that the outputs stay near 1, where 1e-5 means float32 noise."""
    model.set_weights([(RNG.uniform(0.5, 1.5, w.shape) / np.prod(w.shape[:-1])).astype("float32")
                       for w in model.get_weights()])


def trainable_params(model) -> str:
    lines = []
    model.summary(print_fn=lines.append)
    return next(line for line in " ".join(lines).split("  ") if "Trainable params" in line)


def keras_trainable(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_cnnkit_writes_a_nested_model_keras_loads_it(real, tmp_path):
    model = transfer_model(keras)
    randomize(model)
    model.save(tmp_path / "nested.keras")
    theirs = real.models.load_model(tmp_path / "nested.keras")
    np.testing.assert_allclose(theirs.predict(X, verbose=0), model.predict(X), atol=1e-5)
    assert keras_trainable(theirs) == 10  # the head only: Keras reads the base as frozen
    assert trainable_params(model).strip().startswith("Trainable params: 10 ")
    assert [type(layer).__name__ for layer in theirs.layers] == [
        "InputLayer", "Sequential", "Functional", "GlobalAveragePooling2D", "Dense"]


def test_training_false_is_written_as_keras_records_it(real, tmp_path):
    """In training mode (Keras's `model(x, training=True)`), the base still normalizes with its
    moving statistics: the output equals predict's only if training=False was recorded."""
    import torch

    model = transfer_model(keras, augment=False)
    randomize(model)
    model.save(tmp_path / "tuned.keras")
    with zipfile.ZipFile(tmp_path / "tuned.keras") as z:
        entries = json.loads(z.read("config.json"))["config"]["layers"]
    base = next(e for e in entries if e["class_name"] == "Functional")
    assert base["inbound_nodes"][0]["kwargs"] == {"training": False}
    theirs = real.models.load_model(tmp_path / "tuned.keras")
    in_training = theirs(torch.as_tensor(X), training=True).detach().numpy()
    np.testing.assert_allclose(in_training, model.predict(X), atol=1e-5)


def test_keras_writes_a_nested_model_cnnkit_loads_it(real, tmp_path):
    theirs = transfer_model(real)
    randomize(theirs)
    theirs.save(tmp_path / "theirs.keras")
    ours = keras.models.load_model(tmp_path / "theirs.keras")
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X, verbose=0), atol=1e-5)
    assert f"Trainable params: {keras_trainable(theirs)} " in trainable_params(ours)
    assert [layer.type for layer in ours.layers] == [
        "InputLayer", "Sequential", "Functional", "GlobalAveragePooling2D", "Dense"]
    base = ours.layers[2]
    assert base.training is False and base.trainable is False
    # fine-tuning the whole model leaves the base's batch-norm statistics as they were
    base.model.trainable = True
    before = {k: v.clone() for k, v in base.model.net.state_dict().items() if "running" in k}
    ours.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(True))
    ours.fit(X, np.array([0, 1, 0, 1, 1]), epochs=1, verbose=0)
    after = base.model.net.state_dict()
    assert before and all(np.array_equal(v, after[k]) for k, v in before.items())


def test_keras_s_legacy_h5_file_of_a_nested_model_loads(real, tmp_path):
    """A legacy .h5 file keeps a nested model's weights under the model's name, each named
    '<layer>/<weight>'; the base's name holds a '.', as MobileNetV2's 'mobilenetv2_1.00_224'."""
    theirs = transfer_model(real)
    theirs.get_layer("base").name = "base_1.00_10"
    randomize(theirs)
    theirs.save(tmp_path / "theirs.h5")
    ours = keras.models.load_model(tmp_path / "theirs.h5")
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X, verbose=0), atol=1e-5)
    theirs.save(tmp_path / "theirs.keras")
    again = keras.models.load_model(tmp_path / "theirs.keras")
    np.testing.assert_allclose(again.predict(X), theirs.predict(X, verbose=0), atol=1e-5)


def test_a_model_in_a_sequential_both_ways(real, tmp_path):
    """tensorflow.org's `probability_model = Sequential([model, Softmax()])`."""
    ours = keras.Sequential([base_model(keras, trainable=True), keras.layers.Softmax()])
    randomize(ours)
    ours.save(tmp_path / "ours.keras")
    theirs = real.models.load_model(tmp_path / "ours.keras")
    np.testing.assert_allclose(theirs.predict(X, verbose=0), ours.predict(X), atol=1e-5)
    assert f"Trainable params: {keras_trainable(theirs)} " in trainable_params(ours)

    reference = real.Sequential([base_model(real), real.layers.Softmax()])
    reference.build((None, 10, 10, 3))
    randomize(reference)
    reference.save(tmp_path / "theirs.keras")
    back = keras.models.load_model(tmp_path / "theirs.keras")
    np.testing.assert_allclose(back.predict(X), reference.predict(X, verbose=0), atol=1e-5)
    assert f"Trainable params: {keras_trainable(reference)} " in trainable_params(back)


def test_nested_weights_files_follow_keras_paths(real, tmp_path):
    """`save_weights` / `load_weights` of a model holding nested models, with Keras's."""
    ours, theirs = transfer_model(keras), transfer_model(real)
    randomize(ours)
    ours.save_weights(tmp_path / "ours.weights.h5")
    theirs.load_weights(tmp_path / "ours.weights.h5")
    np.testing.assert_allclose(theirs.predict(X, verbose=0), ours.predict(X), atol=1e-5)
    randomize(theirs)
    theirs.save_weights(tmp_path / "theirs.weights.h5")
    ours.load_weights(tmp_path / "theirs.weights.h5")
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X, verbose=0), atol=1e-5)


def test_what_a_keras_file_cannot_hold_is_one_line(tmp_path):
    """A Sequential cannot record its nested model's training=; a legacy .h5 holds no nested
    model: one line each, nothing written."""
    from cnnkit.model.graph import Nested

    model = keras.Sequential([keras.Input((10, 10, 3)), Nested(base_model(keras), training=False),
                              keras.layers.Softmax()])
    with pytest.raises(CnnkitError, match="'base': a Keras Sequential cannot record its nested "
                                          "model's training=False; build the model with the "
                                          "functional API"):
        model.save(tmp_path / "model.keras")
    with pytest.raises(CnnkitError, match="holds a nested model: save it to a .keras file"):
        keras.Sequential([base_model(keras), keras.layers.Softmax()]).save(tmp_path / "m.h5")
    assert list(tmp_path.iterdir()) == []


def test_a_keras_file_scaling_its_pixels_past_a_nested_augmentation_block(real, tmp_path):
    """keras.io's "from scratch" model: `data_augmentation` (a Sequential), then
    `Rescaling(1./255)`; cnnkit's tools feed such a file's model raw 0-255 pixels, as Keras's
    user does (scaled twice, the predictions would differ)."""
    import cnnkit

    L = real.layers
    inputs = real.Input((10, 10, 3))
    x = real.Sequential([L.RandomFlip("horizontal"), L.RandomRotation(0.1)])(inputs)
    x = L.Conv2D(4, 3, activation="relu")(L.Rescaling(1.0 / 255)(x))
    theirs = real.Model(inputs, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    randomize(theirs)
    theirs.save(tmp_path / "from_scratch.keras")
    pixels = RNG.integers(0, 256, (4, 10, 10, 3), dtype=np.uint8)
    ours = cnnkit.load(tmp_path / "from_scratch.keras")  # its predict gives probabilities
    logits = theirs.predict(pixels.astype("float32"), verbose=0)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(ours.predict(pixels), probabilities, atol=1e-5)


def test_training_on_a_single_layer_s_call_is_refused_in_one_line(real, tmp_path):
    """`Dropout(0.5)(x, training=True)` (dropout in predict too) is not what cnnkit computes:
    refused, not read as a plain Dropout."""
    L = real.layers
    inputs = real.Input((10, 10, 3))
    x = L.Dropout(0.5, name="mc_dropout")(L.Flatten()(inputs), training=True)
    real.Model(inputs, L.Dense(2)(x)).save(tmp_path / "mc.keras")
    with pytest.raises(CnnkitError, match="Dropout 'mc_dropout': called with training=True; "
                                          "cnnkit takes training= on a nested model's call only"):
        keras.models.load_model(tmp_path / "mc.keras")
