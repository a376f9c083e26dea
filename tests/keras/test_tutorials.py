"""The Keras code a learner meets after the seeds, run with only its imports changed
(`from cnnkit import keras`, `from cnnkit.keras import layers`): transcriptions of the TensorFlow
site's first tutorial, keras.io's "Simple MNIST convnet", "Image classification from scratch",
the "Transfer learning & fine-tuning" guide and Deep Learning with Python's chapter 9 models.
Their structure, calls and arguments are kept; only data sizes and epochs shrink, and downloads
become small local arrays of the same shapes and dtypes (each says where). Models built from
the same code by real Keras 3 (torch backend) give the reference parameter counts."""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import numpy as np
import pytest
import torch
from PIL import Image

from cnnkit import keras
from cnnkit.errors import CnnkitError
from cnnkit.keras import layers


@pytest.fixture(scope="module")
def real():
    import keras as real_keras

    assert real_keras.backend.backend() == "torch"
    return real_keras


def digits(size: int, n: int):
    """sklearn's 8x8 digits as MNIST's uint8 (n, size, size) images (each pixel a 3x3 block,
    centered), with their uint8 labels: stands in for keras.datasets.mnist's download."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.kron(d.images[:n], np.ones((3, 3))) * (255 / 16)  # (n, 24, 24)
    pad = (size - 24) // 2
    x = np.pad(x, ((0, 0), (pad, size - 24 - pad), (pad, size - 24 - pad)))
    return x.round().astype("uint8"), d.target[:n].astype("uint8")


def pets(n: int, size: int):
    """Stands in for the cats-vs-dogs folders: n uint8 RGB images, the 'dogs' (label 1) brighter
    on their left half, so that a model can tell them apart."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    x = rng.integers(0, 128, (n, size, size, 3))
    x[y == 1, :, : size // 2] += 127
    return x.astype("uint8"), y


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
