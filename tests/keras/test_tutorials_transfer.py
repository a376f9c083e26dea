"""keras.io's "Transfer learning & fine-tuning" guide and its applications page's fine-tuning
example, run with only their imports changed: a base model frozen, called with training=False,
unfrozen, and a model built on a base model's output.
Their structure, calls and arguments are kept; only data sizes and epochs shrink, and downloads
become small local arrays of the same shapes and dtypes (tests/keras/_tutorial_data.py). Models
built from the same code by real Keras 3 (torch backend) give the reference parameter counts."""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import numpy as np
import pytest
import torch

from _tutorial_data import pets
from cnnkit import keras
from cnnkit.errors import CnnkitError
from cnnkit.keras import layers


# -- d. keras.io/guides/transfer_learning: the end-to-end example --------------------------------
def test_transfer_learning_and_fine_tuning(real):
    keras.utils.set_random_seed(0)
    data_augmentation = keras.Sequential(
        [layers.RandomFlip("horizontal"), layers.RandomRotation(0.1)]
    )
    base_model = keras.applications.MobileNetV2(  # Xception there, which cnnkit has not
        weights=None,  # "imagenet" there: weights are another piece of work
        input_shape=(32, 32, 3),  # 150 x 150 there
        include_top=False,
    )
    reference = real.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3),
                                              include_top=False)
    assert base_model.count_params() == reference.count_params()

    # Freeze the base_model
    base_model.trainable = False

    # Create new model on top
    inputs = keras.Input(shape=(32, 32, 3))
    x = data_augmentation(inputs)  # Apply random data augmentation

    # Pre-trained Xception weights requires that input be scaled
    # from (0, 255) to a range of (-1., +1.), the rescaling layer
    # outputs: `(inputs * scale) + offset`
    scale_layer = keras.layers.Rescaling(scale=1 / 127.5, offset=-1)
    x = scale_layer(x)

    # The base model contains batchnorm layers. We want to keep them in inference mode
    # when we unfreeze the base model for fine-tuning, so we make sure that the
    # base_model is running in inference mode here.
    x = base_model(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)  # Regularize with dropout
    outputs = keras.layers.Dense(1)(x)
    model = keras.Model(inputs, outputs)

    lines = []
    model.summary(show_trainable=True, print_fn=lines.append)
    assert " Trainable params: 1,281 (5.00 KB)" in lines  # the Dense head only
    assert any("(Functional)" in line and line.rstrip("│ ").endswith("N") for line in lines)

    def base_state():
        return {k: v.detach().clone() for k, v in base_model.net.state_dict().items()}

    start = base_state()
    model.compile(
        optimizer=keras.optimizers.Adam(),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.BinaryAccuracy()],
    )
    x, y = pets(16, 32)  # the cats-vs-dogs datasets there
    epochs = 1  # 2 there
    model.fit(x, y, epochs=epochs, validation_data=(x[:4], y[:4]))
    frozen = base_state()
    assert all(torch.equal(start[k], frozen[k]) for k in start)  # weights and statistics

    # Unfreeze the base_model. Note that it keeps running in inference mode
    # since we passed `training=False` when calling it.
    base_model.trainable = True
    lines.clear()
    model.summary(show_trainable=True, print_fn=lines.append)
    trainable = 1281 + sum(int(np.prod(w.shape)) for w in reference.trainable_weights)
    assert f" Trainable params: {trainable:,}" in " ".join(lines)

    model.compile(
        optimizer=keras.optimizers.Adam(1e-5),  # Low learning rate
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.BinaryAccuracy()],
    )
    epochs = 1  # 10 there
    model.fit(x, y, epochs=epochs, validation_data=(x[:4], y[:4]))
    tuned = base_state()
    stats = [k for k in start if "running_" in k or "num_batches" in k]
    changed = [k for k in start if not torch.equal(frozen[k], tuned[k])]
    # its weights moved (those whose gradient is not ~0: an untrained MobileNetV2 in inference
    # mode passes little gradient to its first blocks)...
    assert len(changed) > 10
    assert stats and not set(stats) & set(changed)  # ...its batch norm stayed in inference mode


def test_a_model_called_in_training_mode_updates_its_batch_norm():
    """Without `training=False`, fine-tuning a nested model trains its batch norm as Keras
    does: the moving statistics move (the contrast to the guide's advice above)."""
    base = keras.Sequential([keras.Input((8, 8, 3)), layers.Conv2D(4, 3),
                             layers.BatchNormalization()])
    inputs = keras.Input((8, 8, 3))
    outputs = layers.Dense(1)(layers.GlobalAveragePooling2D()(base(inputs)))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss=keras.losses.BinaryCrossentropy(from_logits=True))
    before = base.get_weights()
    x, y = pets(8, 8)
    model.fit(x, y, epochs=1, verbose=0)
    moved = [not np.array_equal(a, b) for a, b in zip(before, base.get_weights())]
    assert all(moved)  # kernel, bias, gamma, beta and both moving statistics


def fine_tune_top_layers(keras, layers):
    """Keras's other fine-tuning pattern: freeze the first layers of a nested base only."""
    base_model = keras.Sequential([keras.Input((8, 8, 3)), layers.Conv2D(4, 3),
                                   layers.BatchNormalization(), layers.Conv2D(6, 3)])
    for layer in base_model.layers[:2]:
        layer.trainable = False
    inputs = keras.Input((8, 8, 3))
    x = base_model(inputs)
    outputs = layers.Dense(1)(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs), base_model


def test_layers_frozen_inside_a_nested_model_stay_frozen(real):
    model, base_model = fine_tune_top_layers(keras, layers)
    reference, _ = fine_tune_top_layers(real, real.layers)
    lines = []
    model.summary(print_fn=lines.append)
    trainable = sum(int(np.prod(w.shape)) for w in reference.trainable_weights)
    assert f" Trainable params: {trainable:,}" in " ".join(lines)

    model.compile(optimizer="adam", loss=keras.losses.BinaryCrossentropy(from_logits=True))
    before = base_model.get_weights()
    x, y = pets(8, 8)
    model.fit(x, y, epochs=2, verbose=0)
    after = base_model.get_weights()
    # conv kernel and bias, batch norm's gamma, beta and moving statistics, the last conv's
    assert [np.array_equal(a, b) for a, b in zip(before, after)] == [True] * 6 + [False] * 2


def test_training_false_is_saved_with_the_model():
    """A saved model reloads with its nested base still in inference mode: fine-tuning the
    reloaded model leaves the base's batch-norm statistics as they were."""
    base = keras.Sequential([keras.Input((8, 8, 3)), layers.Conv2D(4, 3),
                             layers.BatchNormalization()])
    inputs = keras.Input((8, 8, 3))
    outputs = layers.Dense(1)(layers.GlobalAveragePooling2D()(base(inputs, training=False)))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss=keras.losses.BinaryCrossentropy(from_logits=True))
    x, y = pets(8, 8)
    model.fit(x, y, epochs=1, verbose=0)
    model.save("tuned")
    back = keras.models.load_model("tuned")
    np.testing.assert_allclose(back.predict(x), model.predict(x), rtol=1e-5, atol=1e-6)

    def state():
        return {k: v.clone() for k, v in back.layers[1].model.net.state_dict().items()}

    before = state()
    back.fit(x, y, epochs=1, verbose=0)
    after = state()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and not any("running_" in k for k in moved)


# -- keras.io/api/applications: "Fine-tune InceptionV3 on a new set of classes" ------------------
def extend_base_output(keras, layers):
    """The example's pattern, word for word, on a base cnnkit has (InceptionV3 there)."""
    base_model = keras.applications.MobileNetV2(weights=None, include_top=False,
                                                input_shape=(32, 32, 3))
    x = base_model.output
    x = layers.GlobalAveragePooling2D()(x)
    # let's add a fully-connected layer
    x = layers.Dense(1024, activation='relu')(x)
    # and a logistic layer -- let's say we have 200 classes
    predictions = layers.Dense(200, activation='softmax')(x)
    # this is the model we will train
    model = keras.Model(inputs=base_model.input, outputs=predictions)
    # first: train only the top layers (which were randomly initialized)
    # i.e. freeze all convolutional InceptionV3 layers
    for layer in base_model.layers:
        layer.trainable = False
    return model, base_model


def test_a_model_built_on_a_base_models_output(real):
    model, base_model = extend_base_output(keras, layers)
    reference, _ = extend_base_output(real, real.layers)
    assert model.count_params() == reference.count_params()
    lines = []
    model.summary(print_fn=lines.append)
    trainable = sum(int(np.prod(w.shape)) for w in reference.trainable_weights)
    assert f" Trainable params: {trainable:,}" in " ".join(lines)

    # compile the model (should be done *after* setting layers to non-trainable)
    model.compile(optimizer='rmsprop', loss='categorical_crossentropy')
    x, y = pets(8, 32)
    y = keras.utils.to_categorical(y, 200)
    before = base_model.get_weights()
    model.fit(x, y, epochs=1, verbose=0)  # "train the model on the new data for a few epochs"
    assert all(np.array_equal(a, b) for a, b in zip(before, base_model.get_weights()))

    base_model.trainable = True  # the new model holds the base's own weights (Keras shares them)
    for layer in base_model.layers:
        layer.trainable = True
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
                  loss='categorical_crossentropy')
    model.fit(x, y, epochs=1, verbose=0)
    assert not all(np.array_equal(a, b) for a, b in zip(before, base_model.get_weights()))


def test_an_inner_layers_output_cannot_start_a_model():
    base_model = keras.Sequential([keras.Input((8, 8, 3)), layers.Conv2D(4, 3, name="c1"),
                                   layers.Conv2D(4, 3)])
    with pytest.raises(CnnkitError, match="the output of layer 'c1' inside the model "
                                          "'sequential' cannot start a new model here"):
        layers.Flatten()(base_model.get_layer("c1").output)
    # reading inner outputs is what such a model is for (seed 004's feature maps)
    maps = keras.Model(base_model.input, base_model.get_layer("c1").output).predict(
        np.zeros((1, 8, 8, 3), "float32"))
    assert maps.shape == (1, 6, 6, 4)


@pytest.mark.parametrize("training", [True, None, False])
def test_a_nested_model_called_with_training_true_keeps_its_dropout_in_predict(training):
    """Monte Carlo dropout: `block(x, training=True)` drops in predict too, as in Keras."""
    block = keras.Sequential([keras.Input((8, 8, 3)), layers.Conv2D(4, 3),
                              layers.Dropout(0.5)])
    inputs = keras.Input((8, 8, 3))
    outputs = layers.Dense(2)(layers.Flatten()(block(inputs, training=training)))
    model = keras.Model(inputs, outputs)
    x, _ = pets(4, 8)
    first, second = model.predict(x), model.predict(x)
    assert np.array_equal(first, second) == (training is not True)


def test_training_on_a_layers_call_is_one_line_naming_the_model_form():
    inputs = keras.Input((8, 8, 3))
    with pytest.raises(CnnkitError, match=r"Dropout: training=True on a layer's call is not "
                                          r"supported; valid: a model's call, keras.Sequential"):
        layers.Dropout(0.5)(inputs, training=True)
    x = keras.Sequential([layers.Dropout(0.5)])(inputs, training=True)  # the form that runs
    assert x.shape == (None, 8, 8, 3)
