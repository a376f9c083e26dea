"""Deep Learning with Python (2nd ed.), chapter 9's residual blocks and mini Xception, and the
functional merge helpers (`layers.add`, `layers.concatenate`, ...), run with only their imports
changed.
Their structure, calls and arguments are kept; only data sizes and epochs shrink, and downloads
become small local arrays of the same shapes and dtypes (tests/keras/_tutorial_data.py). Models
built from the same code by real Keras 3 (torch backend) give the reference parameter counts."""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import numpy as np
import pytest

from _tutorial_data import pets
from cnnkit import keras
from cnnkit.keras import layers


# -- e. Deep Learning with Python, 2nd ed., chapter 9 --------------------------------------------
def residual_model(keras, layers):
    """Listing 9.x's residual blocks, as the book writes them."""
    inputs = keras.Input(shape=(32, 32, 3))
    x = layers.Rescaling(1./255)(inputs)

    def residual_block(x, filters, pooling=False):
        residual = x
        x = layers.Conv2D(filters, 3, activation="relu", padding="same")(x)
        x = layers.Conv2D(filters, 3, activation="relu", padding="same")(x)
        if pooling:
            x = layers.MaxPooling2D(2, padding="same")(x)
            residual = layers.Conv2D(filters, 1, strides=2)(residual)
        elif filters != residual.shape[-1]:
            residual = layers.Conv2D(filters, 1)(residual)
        x = layers.add([x, residual])
        return x

    x = residual_block(x, filters=32, pooling=True)
    x = residual_block(x, filters=64, pooling=True)
    x = residual_block(x, filters=128, pooling=False)

    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)
    return model


def mini_xception(keras, layers, size):
    """The chapter's mini Xception on cats vs dogs, as the book writes it."""
    data_augmentation = keras.Sequential(
        [
            layers.RandomFlip("horizontal"),
            layers.RandomRotation(0.1),
            layers.RandomZoom(0.2),
        ]
    )
    inputs = keras.Input(shape=(size, size, 3))
    x = data_augmentation(inputs)

    x = layers.Rescaling(1./255)(x)
    x = layers.Conv2D(filters=32, kernel_size=5, use_bias=False)(x)

    for size in [32, 64, 128, 256, 512]:
        residual = x

        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same", use_bias=False)(x)

        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same", use_bias=False)(x)

        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)

        residual = layers.Conv2D(
            size, 1, strides=2, padding="same", use_bias=False)(residual)
        x = layers.add([x, residual])

    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)
    return model


def test_residual_blocks_of_deep_learning_with_python(real):
    model = residual_model(keras, layers)
    model.summary()
    reference = residual_model(real, real.layers)
    assert model.count_params() == reference.count_params()
    ours = [(l.name, tuple(l.output.shape)) for l in model.layers]
    assert [n for n, _ in ours] == [l.name for l in reference.layers] or len(ours) == len(
        reference.layers)  # Keras numbers names over a whole session
    assert [s for _, s in ours] == [tuple(l.output.shape) for l in reference.layers]


def test_mini_xception_of_deep_learning_with_python(real):
    model = mini_xception(keras, layers, 48)  # 180 x 180 in the book
    assert model.count_params() == mini_xception(real, real.layers, 48).count_params()
    model.compile(loss="binary_crossentropy",
                  optimizer="rmsprop",
                  metrics=["accuracy"])
    callbacks = [
        keras.callbacks.ModelCheckpoint(
            filepath="mini_xception.keras",
            save_best_only=True,
            monitor="val_loss")
    ]
    x, y = pets(24, 48)  # image_dataset_from_directory's cats and dogs there
    history = model.fit(x[:16], y[:16], epochs=2,  # 100 there
                        validation_data=(x[16:], y[16:]), callbacks=callbacks)
    assert len(history.history["val_loss"]) == 2

    test_model = keras.models.load_model("mini_xception.keras")
    test_loss, test_acc = test_model.evaluate(x[16:], y[16:])
    print(f"Test accuracy: {test_acc:.3f}")
    best = int(np.argmin(history.history["val_loss"]))
    assert test_loss == pytest.approx(history.history["val_loss"][best], rel=1e-4)


def branches(keras, layers):
    """An Inception-style block written with Keras's functional merge helpers."""
    inputs = keras.Input(shape=(12, 12, 3))
    a = layers.Conv2D(4, 1, activation="relu", name="a")(inputs)
    b = layers.Conv2D(4, 3, padding="same", activation="relu", name="b")(inputs)
    c = layers.Conv2D(4, 5, padding="same", name="c")(inputs)
    x = layers.concatenate([a, b, c], name="cat")
    gate = layers.Conv2D(12, 1, activation="sigmoid", name="gate")(x)
    x = layers.multiply([x, gate])
    y = layers.Conv2D(12, 3, padding="same", name="y")(x)
    x = layers.average([layers.maximum([x, y]), layers.minimum([x, y])])
    x = layers.subtract([layers.add([x, y]), y])
    outputs = layers.Dense(5, activation="softmax", name="out")(
        layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def test_the_merge_helpers_compute_what_keras_computes(real):
    model, reference = branches(keras, layers), branches(real, real.layers)
    for name in ("a", "b", "c", "gate", "y", "out"):
        model.get_layer(name).set_weights(reference.get_layer(name).get_weights())
    x = np.random.default_rng(1).random((4, 12, 12, 3), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x), reference.predict(x, verbose=0), atol=1e-5)
