"""The Keras code a learner meets after the seeds, run with only its imports changed
(`from cnnkit import keras`, `from cnnkit.keras import layers`): the TensorFlow site's first
tutorial, keras.io's "Simple MNIST convnet" and "Image classification from scratch".
Their structure, calls and arguments are kept; only data sizes and epochs shrink, and downloads
become small local arrays of the same shapes and dtypes (tests/keras/_tutorial_data.py). Models
built from the same code by real Keras 3 (torch backend) give the reference parameter counts."""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import numpy as np
import pytest
import torch
from PIL import Image

from _tutorial_data import digits, pets
from cnnkit import keras
from cnnkit.errors import CnnkitError
from cnnkit.keras import layers


# -- a. tensorflow.org/tutorials/keras/classification --------------------------------------------
def test_basic_classification_of_clothing():
    fashion_mnist = keras.datasets.fashion_mnist  # the IDX files Debian installs on this machine
    (train_images, train_labels), (test_images, test_labels) = fashion_mnist.load_data()
    train_images, train_labels = train_images[:2000], train_labels[:2000]  # of 60000
    test_images, test_labels = test_images[:500], test_labels[:500]
    assert train_images.shape == (2000, 28, 28) and train_images.dtype == np.uint8

    train_images = train_images / 255.0
    test_images = test_images / 255.0

    model = keras.Sequential([
        keras.layers.Flatten(input_shape=(28, 28)),
        keras.layers.Dense(128, activation='relu'),
        keras.layers.Dense(10)
    ])
    model.compile(optimizer='adam',
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=['accuracy'])
    model.fit(train_images, train_labels, epochs=3)  # 10 in the tutorial
    test_loss, test_acc = model.evaluate(test_images, test_labels, verbose=2)
    assert test_acc > 0.7  # the tutorial reaches 0.88 on all 60000 images

    probability_model = keras.Sequential([model, keras.layers.Softmax()])
    predictions = probability_model.predict(test_images)
    assert predictions.shape == (500, 10)
    np.testing.assert_allclose(predictions.sum(axis=1), 1, atol=1e-5)
    logits = model.predict(test_images)
    assert (np.argmax(predictions, axis=1) == np.argmax(logits, axis=1)).all()

    img = test_images[1]
    img = (np.expand_dims(img, 0))
    predictions_single = probability_model.predict(img)
    assert np.argmax(predictions_single[0]) == np.argmax(predictions[1])


# -- b. keras.io/examples/vision/mnist_convnet ---------------------------------------------------
def test_simple_mnist_convnet():
    num_classes = 10
    input_shape = (28, 28, 1)
    (x_train, y_train), (x_test, y_test) = (digits(28, 900), digits(28, 1200))  # not mnist
    x_test, y_test = x_test[900:], y_test[900:]

    x_train = x_train.astype("float32") / 255
    x_test = x_test.astype("float32") / 255
    x_train = np.expand_dims(x_train, -1)
    x_test = np.expand_dims(x_test, -1)
    y_train = keras.utils.to_categorical(y_train, num_classes)
    y_test = keras.utils.to_categorical(y_test, num_classes)

    model = keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax"),
        ]
    )
    model.summary()
    assert model.count_params() == 34826  # the example's summary says so

    batch_size = 128
    epochs = 3  # 15 in the example
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs,
                        validation_split=0.1)
    assert set(history.history) == {"accuracy", "loss", "val_accuracy", "val_loss"}

    score = model.evaluate(x_test, y_test, verbose=0)
    print("Test loss:", score[0])
    print("Test accuracy:", score[1])
    assert score[1] > 0.6  # the example reaches 0.99 on MNIST's 60000


# -- c. keras.io/examples/vision/image_classification_from_scratch -------------------------------
def make_model(keras, layers, input_shape, num_classes):
    """The example's model, word for word; `keras` and `layers` are cnnkit's or Keras's."""
    data_augmentation = keras.Sequential(
        [
            layers.RandomFlip("horizontal"),
            layers.RandomRotation(0.1),
        ]
    )
    inputs = keras.Input(shape=input_shape)
    # Image augmentation block
    x = data_augmentation(inputs)

    # Entry block
    x = layers.Rescaling(1.0 / 255)(x)
    x = layers.Conv2D(128, 3, strides=2, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)

    previous_block_activation = x  # Set aside residual

    for size in [256, 512, 728]:
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)

        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)

        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)

        # Project residual
        residual = layers.Conv2D(size, 1, strides=2, padding="same")(
            previous_block_activation
        )
        x = layers.add([x, residual])  # Add back residual
        previous_block_activation = x  # Set aside next residual

    x = layers.SeparableConv2D(1024, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)

    x = layers.GlobalAveragePooling2D()(x)
    if num_classes == 2:
        units = 1
    else:
        units = num_classes

    x = layers.Dropout(0.25)(x)
    # We specify activation=None so as to return logits
    outputs = layers.Dense(units, activation=None)(x)
    return keras.Model(inputs, outputs)


def test_image_classification_from_scratch(real):
    image_size = (32, 32)  # 180 x 180 in the example
    model = make_model(keras, layers, input_shape=image_size + (3,), num_classes=2)
    reference = make_model(real, real.layers, input_shape=image_size + (3,), num_classes=2)
    assert model.count_params() == reference.count_params()
    picture = keras.utils.plot_model(model, show_shapes=True)
    assert picture.stat().st_size > 0

    epochs = 2  # 25 in the example
    model.compile(
        optimizer=keras.optimizers.Adam(3e-4),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.BinaryAccuracy(name="acc")],
    )
    # image_dataset_from_directory's cats and dogs: arrays of its uint8 pixels and 0/1 labels
    x, y = pets(24, image_size[0])
    history = model.fit(x, y, epochs=epochs, validation_data=(x[:8], y[:8]))
    assert set(history.history) == {"acc", "loss", "val_acc", "val_loss"}

    Image.fromarray(x[0]).save("6779.jpg")  # "PetImages/Cat/6779.jpg" there
    img = keras.utils.load_img("6779.jpg", target_size=image_size)
    img_array = keras.utils.img_to_array(img)
    img_array = keras.ops.expand_dims(img_array, 0)  # Create batch axis
    predictions = model(img_array)
    score = float(keras.ops.sigmoid(predictions[0][0]))
    print(f"This image is {100 * (1 - score):.2f}% cat and {100 * score:.2f}% dog.")
    assert predictions.shape == (1, 1) and 0 < score < 1
    assert score == pytest.approx(float(torch.sigmoid(torch.tensor(model.predict(
        np.asarray(img)[None])[0, 0]))), abs=1e-6)


@pytest.mark.parametrize("kwargs", [
    {}, {"target_size": (20, 30)}, {"color_mode": "grayscale", "target_size": (16, 16),
                                    "interpolation": "bilinear"},
    {"color_mode": "rgba", "target_size": (10, 20), "keep_aspect_ratio": True}])
def test_load_img_and_img_to_array_give_what_keras_gives(real, kwargs):
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (24, 36, 3), dtype=np.uint8)).save("cat.png")
    ours = keras.utils.img_to_array(keras.utils.load_img("cat.png", **kwargs))
    theirs = real.utils.img_to_array(real.utils.load_img("cat.png", **kwargs))
    assert ours.dtype == theirs.dtype == np.float32
    np.testing.assert_array_equal(ours, theirs)


def test_what_ops_and_load_img_do_not_take_is_one_line():
    with pytest.raises(AttributeError, match="keras.ops.conv is not in cnnkit.keras.ops; it "
                                             "has expand_dims, sigmoid"):
        keras.ops.conv
    with pytest.raises(CnnkitError, match="unknown load_img color_mode 'cmyk'; valid: rgb, "
                                          "grayscale, rgba"):
        keras.utils.load_img("cat.png", color_mode="cmyk")


def test_the_checkpoints_of_a_model_holding_a_nested_model_are_keras_files(real):
    """The example's `ModelCheckpoint("save_at_{epoch}.keras")` on a model holding its
    augmentation Sequential: real Keras loads the checkpoint to the same predictions, and so
    does cnnkit."""
    model = make_model(keras, layers, input_shape=(16, 16, 3), num_classes=2)
    model.compile(optimizer=keras.optimizers.Adam(3e-4),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True))
    x, y = pets(4, 16)
    model.fit(x, y, epochs=1,
              callbacks=[keras.callbacks.ModelCheckpoint("save_at_{epoch}.keras")])
    theirs = real.models.load_model("save_at_1.keras")
    pixels = x.astype("float32")
    np.testing.assert_allclose(theirs.predict(pixels, verbose=0), model.predict(x), atol=1e-5)
    back = keras.models.load_model("save_at_1.keras")
    np.testing.assert_allclose(back.predict(x), model.predict(x), atol=1e-5)
