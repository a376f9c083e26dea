"""Real Keras files in and out: Keras 3 (torch backend, no TensorFlow) writes `.keras` and
legacy `.h5` files here, cnnkit reads them and must predict what Keras predicts; cnnkit writes
them, and Keras must read them back to the same predictions."""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import re

import numpy as np
import pytest

import cnnkit
from cnnkit.errors import CnnkitError



@pytest.fixture(scope="module")
def images():
    # on the 8-bit grid, so cnnkit's pixel contract (uint8 in) sees exactly these values
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (16, 28, 28, 1)) / 255).astype("float32")


@pytest.fixture(scope="module")
def trained(keras, images, tmp_path_factory):
    """A Keras Sequential of every layer cnnkit reads, trained a little (so batch norm's
    moving statistics are not their start values), saved both ways, and its predictions."""
    from keras import layers, regularizers

    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(8, 3, activation="relu", padding="same", kernel_regularizer=regularizers.l2(0.01)),
        layers.MaxPooling2D(2),
        layers.BatchNormalization(),
        layers.AveragePooling2D(2, padding="same"),
        layers.ZeroPadding2D(1),
        layers.Conv2D(6, (3, 2), strides=2, use_bias=False),
        layers.LeakyReLU(negative_slope=0.2),
        layers.ReLU(),
        layers.Dropout(0.3),
        layers.Flatten(),
        layers.Dense(12, activation="tanh", name="hidden"),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images, np.arange(16) % 10, epochs=2, verbose=0)
    folder = tmp_path_factory.mktemp("keras-files")
    model.save(folder / "model.keras")
    model.save(folder / "model.h5")
    return folder, model.predict(images, verbose=0), (model.count_params(), [l.name for l in model.layers])


@pytest.mark.parametrize("name", ["model.keras", "model.h5"])
def test_keras_files_load_and_predict_as_keras_does(trained, images, name):
    from cnnkit.keras.models import load_model

    folder, expected, (params, names) = trained
    model = load_model(folder / name)
    np.testing.assert_allclose(model.predict(images), expected, atol=2e-6)
    assert [layer.name for layer in model.layers] == names  # Keras's names, "hidden" among them
    assert model.count_params() == params  # batch norm's moving statistics counted, as Keras does
    # cnnkit's own API reads the same file: probabilities by its contract, same numbers
    core = cnnkit.load(folder / name)
    assert type(core) is cnnkit.Sequential
    np.testing.assert_allclose(core.predict(images), expected, atol=2e-6)


def test_cnnkit_writes_keras_files_keras_reads(keras, trained, images, tmp_path):
    from cnnkit.keras.models import load_model

    folder, expected, (params, names) = trained
    model = load_model(folder / "model.keras")
    model.class_names = [f"digit {i}" for i in range(10)]
    model.save(tmp_path / "again.keras")
    model.save(tmp_path / "again.h5")
    for name in ("again.keras", "again.h5"):
        back = keras.models.load_model(tmp_path / name)
        np.testing.assert_allclose(back.predict(images, verbose=0), expected, atol=2e-6)
    again = cnnkit.load(tmp_path / "again.keras")
    assert again.class_names[3] == "digit 3"  # cnnkit's extras ride inside the zip
    np.testing.assert_allclose(again.predict(images), expected, atol=2e-6)


def test_a_cnnkit_preset_with_pytorch_padding_saves_as_keras(keras, images, tmp_path):
    model = cnnkit.create_model("seed003-cnn")  # Conv(3, padding=1): Keras's 'same' at stride 1
    model.save(tmp_path / "cnn.keras")
    back = keras.models.load_model(tmp_path / "cnn.keras")
    logits = back.predict(images, verbose=0)  # its last Dense is linear: Keras gives logits
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(probs, model.predict(images), atol=2e-6)  # cnnkit: probabilities
    assert back.count_params() == 50186
    deep = cnnkit.create_model("seed003-deep")  # MaxPool2d(2, 2, padding=1): no Keras twin
    with pytest.raises(CnnkitError, match=r"MaxPooling2D 'max_pooling2d_2': padding=\(1, 1\) has no Keras equivalent"):
        deep.save(tmp_path / "deep.keras")
    assert not (tmp_path / "deep.keras").exists()


def test_functional_chain_reads_and_unsupported_layers_are_named(keras, images, tmp_path):
    from keras import layers

    inputs = keras.Input((28, 28, 1))
    x = layers.Conv2D(4, 3, activation="relu")(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(3, activation="softmax")(x)
    chain = keras.Model(inputs, outputs)
    chain.save(tmp_path / "chain.keras")
    loaded = cnnkit.keras.models.load_model(tmp_path / "chain.keras")
    np.testing.assert_allclose(loaded.predict(images), chain.predict(images, verbose=0), atol=2e-6)

    odd = keras.Sequential([keras.Input((28, 28, 1)), layers.RandomBrightness(0.1),
                            layers.LayerNormalization(), layers.Flatten(), layers.Dense(2)])
    odd.save(tmp_path / "odd.keras")
    with pytest.raises(CnnkitError) as e:
        cnnkit.load(tmp_path / "odd.keras")
    message = str(e.value)
    assert "\n" not in message
    # (Keras numbers its automatic names across the process: random_brightness_2 after others)
    assert re.search(r"RandomBrightness \(random_brightness(_\d+)?\)", message)
    assert re.search(r"LayerNormalization \(layer_normalization(_\d+)?\)", message)


def test_keras_file_through_the_cli(trained, tmp_path, capsys):
    from cnnkit.cli import main

    folder, _, _ = trained
    assert main(["summary", str(folder / "model.keras")]) in (0, None)
    out = capsys.readouterr().out
    assert "hidden (Dense)" in out and re.search(r"batch_normalization(_\d+)? \(BatchNormalization\)", out)


def test_predict_and_evaluate_take_a_keras_file(trained, images, tmp_path, capsys):
    from PIL import Image

    from cnnkit.cli import main

    folder, expected, _ = trained
    Image.fromarray((images[3, :, :, 0] * 255).round().astype(np.uint8)).save(tmp_path / "x.png")
    assert main(["predict", str(folder / "model.keras"), str(tmp_path / "x.png"),
                 "--top-k", "1", "--json"]) in (0, None)
    import json

    answer = json.loads(capsys.readouterr().out)
    assert answer[0]["top"][0]["class"] == str(int(expected[3].argmax()))
    assert main(["evaluate", str(folder / "model.h5"), "--dataset", "fashion-mnist",
                 "--out", str(tmp_path / "ev")]) in (0, None)
    assert "fashion-mnist test: 10,000 images" in capsys.readouterr().out
    assert main(["predict", str(tmp_path / "gone.keras"), str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err.strip() == \
        f"cnnkit: error: Keras model file '{tmp_path / 'gone.keras'}' does not exist"


def test_weights_only_files(trained, images, tmp_path):
    from cnnkit.keras.models import load_model

    folder, expected, (params, names) = trained
    model = load_model(folder / "model.keras")
    model.save_weights(tmp_path / "w.weights.h5")
    fresh = cnnkit.keras.models.clone_model(model)
    assert not np.allclose(fresh.predict(images), expected, atol=1e-3)
    fresh.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_allclose(fresh.predict(images), expected, atol=2e-6)
