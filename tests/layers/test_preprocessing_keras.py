"""The preprocessing and augmentation layers as Keras users write them (cnnkit.keras): a
Sequential that augments and rescales inside the model trains with fit on 0-255 arrays,
predicts what Keras predicts with the same weights, and round-trips through cnnkit's saved
models and Keras's `.keras` files (both ways)."""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import numpy as np
import pytest

import cnnkit

RNG = np.random.default_rng(0)
PIXELS = RNG.integers(0, 256, (24, 16, 16, 3)).astype("uint8")
X = PIXELS.astype("float32")  # 0-255 floats, as Keras tutorials feed a Rescaling(1/255) model
Y = np.arange(24) % 3



def _tutorial_model(layers, models):
    return models.Sequential([
        layers.Input((16, 16, 3)),
        layers.RandomFlip("horizontal"),
        layers.RandomRotation(0.1),
        layers.RandomZoom(0.1),
        layers.RandomTranslation(0.1, 0.1),
        layers.RandomContrast(0.2),
        layers.Rescaling(1.0 / 255),
        layers.Conv2D(4, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(3, activation="softmax"),
    ])


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    from cnnkit.keras import layers, models

    cnnkit.keras.utils.set_random_seed(0)
    model = _tutorial_model(layers, models)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(X, Y, epochs=3, batch_size=8, verbose=0)
    folder = tmp_path_factory.mktemp("fitted")
    return model, history, folder


def test_augmenting_model_trains_with_fit_on_raw_pixels(fitted):
    model, history, _ = fitted
    losses = history.history["loss"]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert model.preprocessing == {"normalize": "standardize", "mean": [0.0], "std": [1 / 255]}
    first = model.predict(X, verbose=0)
    np.testing.assert_array_equal(model.predict(X, verbose=0), first)  # inference: no randomness
    np.testing.assert_allclose(first.sum(1), 1.0, atol=1e-6)


def test_saved_and_loaded_model_predicts_the_same(fitted):
    from cnnkit.keras.models import load_model

    model, _, folder = fitted
    model.save(folder / "model")
    back = load_model(folder / "model")
    np.testing.assert_array_equal(back.predict(X, verbose=0), model.predict(X, verbose=0))
    assert [layer.type for layer in back.layers][:6] == [
        "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
        "Rescaling"]
    # cnnkit's own tools feed uint8 pixels through the saved input contract: raw 0-255 here
    core = cnnkit.load(folder / "model")
    np.testing.assert_allclose(core.predict(PIXELS), model.predict(X, verbose=0), atol=1e-6)


def test_rescaling_model_gives_keras_predictions_both_ways(keras, fitted):
    """cnnkit's weights written to a .keras file: Keras predicts the same on the 0-255 floats;
    Keras's file read back: cnnkit predicts the same, and reads it as a raw-pixel model."""
    from cnnkit.keras.models import load_model

    model, _, folder = fitted
    model.save(folder / "model.keras")
    theirs = keras.models.load_model(folder / "model.keras")
    want = theirs.predict(X, verbose=0)
    np.testing.assert_allclose(model.predict(X, verbose=0), want, atol=1e-5)
    assert theirs.count_params() == model.count_params()

    theirs.save(folder / "keras-made.keras")  # a file Keras wrote (no cnnkit extras inside)
    again = load_model(folder / "keras-made.keras")
    np.testing.assert_allclose(again.predict(X, verbose=0), want, atol=1e-5)
    core = cnnkit.load(folder / "keras-made.keras")
    assert core.preprocessing == {"normalize": "standardize", "mean": [0.0], "std": [1 / 255]}
    np.testing.assert_allclose(core.predict(PIXELS), want, atol=1e-5)


def test_keras_normalization_adapted_model_reads_and_writes(keras, tmp_path):
    from cnnkit.keras.models import load_model

    keras.utils.set_random_seed(0)
    norm = keras.layers.Normalization()
    norm.adapt(X)
    kmodel = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Resizing(8, 8), norm,
                               keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    kmodel.save(tmp_path / "norm.keras")
    want = kmodel.predict(X, verbose=0)
    ours = load_model(tmp_path / "norm.keras")
    np.testing.assert_allclose(ours.predict(X, verbose=0), want, atol=1e-5)
    assert ours.count_params() == kmodel.count_params()  # mean, variance and count: 2·3 + 1
    ours.save(tmp_path / "again.keras")
    back = keras.models.load_model(tmp_path / "again.keras")
    np.testing.assert_allclose(back.predict(X, verbose=0), want, atol=1e-5)


def test_cnnkit_keras_normalization_adapt_sets_a_built_models_weights(keras):
    from cnnkit.keras import layers, models

    norm = layers.Normalization()
    model = models.Sequential([layers.Input((16, 16, 3)), norm, layers.Flatten()])
    model.predict(X[:2], verbose=0)  # built before adapt, as Keras allows
    norm.adapt(X)
    theirs = keras.layers.Normalization()
    theirs.adapt(X)
    want = np.asarray(theirs(X).detach().cpu()).reshape(len(X), -1)
    np.testing.assert_allclose(model.predict(X, verbose=0), want, atol=1e-4)
    mean, variance, count = norm.get_weights()
    np.testing.assert_allclose(mean, np.asarray(theirs.adapt_mean), rtol=1e-5)
    assert count == 0  # Keras 3's adapt leaves its count weight 0


def test_per_channel_rescaling_equals_keras_and_a_wrong_count_is_one_line(keras, tmp_path):
    """Rescaling with one factor per channel (Keras's EfficientNet with ImageNet weights):
    the same output as Keras's, through a .keras file both ways."""
    from cnnkit.errors import CnnkitError
    from cnnkit.keras import layers, models
    from cnnkit.keras.models import load_model

    factors = [0.5, 2.0, -3.0]
    theirs = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Rescaling(factors, 1.0)])
    ours = models.Sequential([layers.Input((16, 16, 3)), layers.Rescaling(factors, 1.0)])
    np.testing.assert_allclose(ours.predict(X, verbose=0), theirs.predict(X, verbose=0), rtol=1e-6)
    theirs.save(tmp_path / "k.keras")
    np.testing.assert_allclose(load_model(tmp_path / "k.keras").predict(X, verbose=0),
                               theirs.predict(X, verbose=0), rtol=1e-6)
    with pytest.raises(CnnkitError, match=r"^layers\[0\] Rescaling 'rescaling': 2 scale "
                                          r"factors for 3 channels; valid: one, or one per channel$"):
        models.Sequential([layers.Input((16, 16, 3)), layers.Rescaling([1.0, 2.0])]).summary()
