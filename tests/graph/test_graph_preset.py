"""The resnet-mini preset: a residual graph that adapts to the data like the other presets, with
Keras's own parameter counts, and that trains.
The registry-wide preset tests cover it too: build, forward, save, diagram, export, serve."""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import pytest

import cnnkit
import cnnkit.layers as L
from cnnkit.model.graph import Functional
from cnnkit.model.presets import PRESETS, resnet_mini


def keras_resnet_mini(input_shape, num_classes):
    import keras
    from keras import layers

    def bn(x):
        return layers.BatchNormalization(momentum=0.9)(x)

    def block(x, filters, strides=1):
        y = layers.Activation("relu")(bn(layers.Conv2D(filters, 3, strides, padding="same",
                                                       use_bias=False)(x)))
        y = bn(layers.Conv2D(filters, 3, padding="same", use_bias=False)(y))
        if strides != 1 or x.shape[-1] != filters:
            x = bn(layers.Conv2D(filters, 1, strides, use_bias=False)(x))
        return layers.Activation("relu")(layers.Add()([x, y]))

    inputs = keras.Input(input_shape)
    x = layers.Activation("relu")(bn(layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)))
    x = block(block(x, 16), 32, strides=2)
    outputs = layers.Dense(num_classes, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("input_shape,classes", [((8, 8, 1), 10), ((28, 28, 1), 10),
                                                 ((32, 32, 3), 3), ((7, 9, 3), 2)])
def test_resnet_mini_adapts_to_the_data_with_keras_parameter_counts(input_shape, classes):
    model = resnet_mini(input_shape, classes)
    theirs = keras_resnet_mini(input_shape, classes)
    rows = model.layer_infos()
    assert isinstance(model, Functional) and model.output_shape == (classes,)
    assert sum(r.trainable for r in rows) == sum(
        int(w.numpy().size) for w in theirs.trainable_weights)
    assert sum(r.non_trainable for r in rows) == sum(
        int(w.numpy().size) for w in theirs.non_trainable_weights)
    assert [r.output_shape for r in rows] == [tuple(t.shape[1:]) for t in (
        layer.output for layer in theirs.layers)]
    assert sum(1 for r in rows if r.layer.type == "Add") == 2


def test_resnet_mini_trains_on_digits(tmp_path):
    result = cnnkit.run(cnnkit.RunSpec(model=resnet_mini((8, 8, 1), 10).get_config(),
                                       dataset="digits", epochs=3, batch_size=64, lr=0.01,
                                       seed=0, verbose=0, out=str(tmp_path / "run")))
    assert result.metrics["test_accuracy"] > 0.8


def test_resnet_mini_is_a_preset():
    assert "resnet-mini" in PRESETS
