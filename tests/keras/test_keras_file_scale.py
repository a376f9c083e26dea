"""A `.keras` file written by real Keras records no preprocessing: the model takes whatever its
Keras user fed it. cnnkit's tools feed 8-bit pixels, so `cnnkit.load(path, scale=...)` says
what they are multiplied by first (default 1/255, as most Keras code scales), the predictions
then equal Keras's on the inputs that user fed, and the choice is saved with the model."""
from __future__ import annotations

import json
import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import numpy as np
import pytest

import cnnkit
from cnnkit.errors import CnnkitError


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(4)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    path = tmp_path_factory.mktemp("keras") / "raw.keras"
    model.save(path)
    pixels = np.random.default_rng(0).integers(0, 256, (12, 8, 8, 1)).astype(np.uint8)
    raw = model.predict(pixels.astype("float32"), verbose=0)  # seed 000's first model: raw
    scaled = model.predict(pixels.astype("float32") / 255, verbose=0)  # seed 002: x / 255
    assert not np.allclose(raw, scaled, atol=1e-3)  # the scale matters for this model
    return path, pixels, raw, scaled


def test_scale_says_what_the_keras_model_was_fed(keras_file):
    path, pixels, raw, scaled = keras_file
    np.testing.assert_allclose(cnnkit.load(path).predict(pixels), scaled, atol=2e-6)  # default
    np.testing.assert_allclose(cnnkit.load(path, scale=1 / 255).predict(pixels), scaled, atol=2e-6)
    model = cnnkit.load(path, scale=1)
    np.testing.assert_allclose(model.predict(pixels), raw, rtol=1e-5, atol=2e-6)
    assert not cnnkit.load(path).input_scale_recorded and model.input_scale_recorded


def test_the_scale_is_saved_with_the_model(keras_file, tmp_path, capsys):
    path, pixels, raw, _ = keras_file
    model = cnnkit.load(path, scale=1)
    model.save(tmp_path / "again.keras")  # cnnkit.json inside the zip records it
    again = cnnkit.load(tmp_path / "again.keras")
    assert again.input_scale_recorded
    np.testing.assert_allclose(again.predict(pixels), raw, rtol=1e-5, atol=2e-6)
    model.save(tmp_path / "folder")  # a cnnkit model directory: model.json
    saved = json.loads((tmp_path / "folder" / "model.json").read_text())["preprocessing"]
    assert saved["normalize"] == "standardize" and saved["mean"] == [0.0]
    np.testing.assert_allclose(cnnkit.load(tmp_path / "folder").predict(pixels), raw, rtol=1e-5,
                               atol=2e-6)
    # the CLI, which takes the file alone, feeds an image's pixels by the recorded scale
    from PIL import Image

    from cnnkit.cli import main

    i = int(np.argmax(np.abs(raw - cnnkit.load(path).predict(pixels)).max(axis=1)))
    Image.fromarray(pixels[i, :, :, 0]).save(tmp_path / "x.png")
    assert main(["predict", str(tmp_path / "again.keras"), str(tmp_path / "x.png"), "--top-k",
                 "3", "--json"]) in (0, None)
    top = json.loads(capsys.readouterr().out)[0]["top"]
    np.testing.assert_allclose(sorted(t["probability"] for t in top), sorted(raw[i]), atol=1e-5)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "1/255", True])
def test_a_bad_scale_is_one_line(keras_file, bad):
    path = keras_file[0]
    with pytest.raises(CnnkitError, match=r"^scale=.* is out of range; valid: a number > 0, "
                                          r"1/255 .* or 1 \(raw 0-255 pixels"):
        cnnkit.load(path, scale=bad)


def test_scale_is_only_for_keras_files(keras_file, tmp_path):
    cnnkit.load(keras_file[0]).save(tmp_path / "m")
    with pytest.raises(CnnkitError, match=r"^scale=1 is for Keras files .* load it without scale=$"):
        cnnkit.load(tmp_path / "m", scale=1)
