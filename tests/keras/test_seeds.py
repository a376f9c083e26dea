"""The Keras seeds' code blocks, ported by changing only their imports (`tensorflow.keras` /
`keras` -> `cnnkit.keras`), on less data and fewer epochs so each runs in seconds.

MNIST cannot be downloaded on the test machines, so the seeds that load it (000, 004) load
Fashion-MNIST instead (`from cnnkit.keras.datasets import fashion_mnist as mnist`): same
shapes, same 10 classes, same code. Lines marked `# test:` are the test's, not the seed's.
"""
from __future__ import annotations

import numpy as np

import cnnkit


def test_seed000_first_model_raw_pixels_and_history(capsys):
    import matplotlib.pyplot as plt

    from cnnkit.keras.models import Sequential, load_model
    from cnnkit.keras.layers import Input, Conv2D, MaxPooling2D, Dense, Flatten
    from cnnkit.keras.utils import to_categorical
    from cnnkit.keras.datasets import fashion_mnist as mnist  # test: MNIST is not on this machine

    from cnnkit.keras.utils import set_random_seed  # test: the same numbers every run
    set_random_seed(0)  # test
    (X_train, y_train), (X_test, y_test) = mnist.load_data()
    print('X_train shape = ', X_train.shape)
    assert X_train.shape == (60000, 28, 28) and X_train.dtype == np.uint8
    assert y_train.shape == (60000,) and X_test.shape == (10000, 28, 28)
    X_train = X_train.reshape(60000, 28, 28, 1)
    X_test = X_test.reshape(10000, 28, 28, 1)
    y_train = to_categorical(y_train)
    y_test = to_categorical(y_test)
    print(y_train[0])
    assert y_train[0].tolist() == [0.0] * 9 + [1.0]  # Fashion-MNIST's first image: class 9
    X_train, y_train, X_test, y_test = X_train[:300], y_train[:300], X_test[:100], y_test[:100]  # test

    model = Sequential([
        Input(shape=(28, 28, 1), name='input_layer'),
        Conv2D(32, kernel_size=3, activation='relu', name='cov_layer1'),
        MaxPooling2D(pool_size=2),
        Flatten(),
        Dense(10, activation='softmax', name='')
    ])
    model.summary()
    assert "54,410" in capsys.readouterr().out
    assert [layer.name for layer in model.layers] == ["cov_layer1", "max_pooling2d", "flatten", "dense"]

    model.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['accuracy'])
    history = model.fit(X_train, y_train, validation_data=(X_test, y_test), batch_size=10, epochs=2)

    def plot_loss_curve(history):
        plt.figure(figsize=(5, 3))
        plt.plot(history['loss'])
        plt.plot(history['val_loss'])
        plt.legend(['train', 'test'], loc='upper right')
        plt.savefig("loss.png")  # test: plt.show()

    plot_loss_curve(history.history)
    print('train acc =', history.history['accuracy'][-1])
    print('validation acc =', history.history['val_accuracy'][-1])
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.history["loss"]) == 2
    # validation acc is the share of the test images the trained model gets right
    predicted = model.predict(X_test).argmax(axis=1)
    assert history.history["val_accuracy"][-1] == np.mean(predicted == y_test.argmax(axis=1))
    assert history.history["val_accuracy"][-1] > 0.4  # chance: 0.1; raw 0-255 pixels train
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_seed000_train_mnist_model_saves_a_model_that_loads():
    from cnnkit.keras.models import Sequential, load_model
    from cnnkit.keras.layers import Input, Conv2D, MaxPooling2D, Dense, Flatten
    from cnnkit.keras.utils import to_categorical
    from cnnkit.keras.datasets import fashion_mnist as mnist  # test: MNIST is not on this machine

    def train_mnist_model():
        (X_train, y_train), (X_test, y_test) = mnist.load_data()
        X_train = X_train.reshape(60000, 28, 28, 1)[:400]  # test: [:400]
        X_test = X_test.reshape(10000, 28, 28, 1)[:100]  # test: [:100]
        y_train = to_categorical(y_train)[:400]  # test: [:400]
        y_test = to_categorical(y_test)[:100]  # test: [:100]

        model = Sequential([
            Input(shape=(28, 28, 1), name='input_layer_1'),
            Conv2D(32, kernel_size=3, activation='relu', name='conv_layer_2'),
            MaxPooling2D(pool_size=2, name='Pooling_layer_3'),
            Conv2D(64, kernel_size=3, activation='relu', name='conv_layer_4'),
            MaxPooling2D(pool_size=2, name='Pooling_layer5'),
            Flatten(),
            Dense(16, activation='relu', name='FC_layer_6'),
            Dense(10, activation='softmax', name='Output_layer_7')
        ])
        model.summary()
        model.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['accuracy'])
        history = model.fit(X_train, y_train, validation_data=(X_test, y_test), batch_size=20, epochs=1)
        print('train Acc = {}, validation Acc = {}'.format(history.history['accuracy'][-1], history.history['val_accuracy'][-1]))
        model.save('mnist_model')
        return model, X_test, y_test  # test: returned for the checks below

    model, X_test, y_test = train_mnist_model()
    assert model.count_params() == 44602
    again = load_model('mnist_model')  # a cnnkit model directory
    np.testing.assert_array_equal(again.predict(X_test), model.predict(X_test))
    # reloaded, it evaluates as saved: compiled with the seed's optimizer, loss and metrics
    assert again.evaluate(X_test, y_test) == model.evaluate(X_test, y_test)
    assert cnnkit.load('mnist_model').get_layer("FC_layer_6").units == 16


def test_seed004_chollet_convnet_test_acc_is_a_number(capsys):
    from cnnkit.keras import layers
    from cnnkit.keras import models

    model = models.Sequential()
    model.add(layers.Conv2D(32, (3, 3), activation='relu', input_shape=(28, 28, 1)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation='relu'))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation='relu'))
    model.add(layers.Flatten())
    model.add(layers.Dense(64, activation='relu'))
    model.add(layers.Dense(10, activation='softmax'))
    model.summary()
    assert "93,322" in capsys.readouterr().out

    from cnnkit.keras.datasets import fashion_mnist as mnist  # test: MNIST is not on this machine
    from cnnkit.keras.utils import to_categorical

    (train_images, train_labels), (test_images, test_labels) = mnist.load_data()
    train_images = train_images.reshape((60000, 28, 28, 1))
    train_images = train_images.astype('float32') / 255
    test_images = test_images.reshape((10000, 28, 28, 1))
    test_images = test_images.astype('float32') / 255
    train_labels = to_categorical(train_labels)
    test_labels = to_categorical(test_labels)
    train_images, train_labels = train_images[:800], train_labels[:800]  # test
    test_images, test_labels = test_images[:200], test_labels[:200]  # test

    from cnnkit.keras.utils import set_random_seed  # test: the same numbers every run
    set_random_seed(0)  # test
    model.compile(optimizer='rmsprop', loss='categorical_crossentropy', metrics=['accuracy'])
    model.fit(train_images, train_labels, epochs=2, batch_size=64)
    test_loss, test_acc = model.evaluate(test_images, test_labels)
    print(test_acc)
    assert capsys.readouterr().out.splitlines()[-1] == str(test_acc)
    assert isinstance(test_acc, float) and isinstance(test_loss, float)
    right = model.predict(test_images).argmax(1) == test_labels.argmax(1)
    assert test_acc == right.mean() and test_acc > 0.4  # chance: 0.1
    assert model.evaluate(test_images, test_labels, return_dict=True) == {
        "accuracy": test_acc, "loss": test_loss}

    # the activation model (Chollet 5.4.1): each layer's output for one image
    img_tensor = test_images[:1]
    layer_outputs = [layer.output for layer in model.layers[:8]]
    activation_model = models.Model(inputs=model.input, outputs=layer_outputs)
    activations = activation_model.predict(img_tensor)
    first_layer_activation = activations[0]
    print(first_layer_activation.shape)
    assert [a.shape for a in activations] == [(1, 26, 26, 32), (1, 13, 13, 32), (1, 11, 11, 64),
                                              (1, 5, 5, 64), (1, 3, 3, 64), (1, 576), (1, 64), (1, 10)]
    import matplotlib.pyplot as plt

    plt.matshow(first_layer_activation[0, :, :, 4], cmap='viridis')
    plt.savefig("channel4.png")  # test: plt.show()
    # the first map is relu(conv(image)), computed here from the layer's own weights
    kernel, bias = model.layers[0].get_weights()  # (3, 3, 1, 32), (32,)
    patches = np.lib.stride_tricks.sliding_window_view(img_tensor[0, :, :, 0], (3, 3))  # (26, 26, 3, 3)
    by_hand = np.maximum(np.einsum("ijkl,klc->ijc", patches, kernel[:, :, 0, :]) + bias, 0)
    np.testing.assert_allclose(first_layer_activation[0], by_hand, atol=1e-5)
    np.testing.assert_allclose(activations[-1], model.predict(img_tensor), atol=1e-6)
    # seed 002's lesson: one image needs its batch axis
    import pytest

    with pytest.raises(cnnkit.CnnkitError, match=r"np.expand_dims\(x, 0\) or x\[None\]"):
        model.predict(test_images[0])


def test_seed002_fashion_checkpoint_early_stopping_and_prediction_bars():
    from cnnkit import keras
    from sklearn.model_selection import train_test_split

    keras.utils.set_random_seed(0)  # test
    (train_input, train_target), (test_input, test_target) = \
        keras.datasets.fashion_mnist.load_data()
    train_input, train_target = train_input[:400], train_target[:400]  # test
    test_input, test_target = test_input[:100], test_target[:100]  # test
    train_scaled = train_input.reshape(-1, 28, 28, 1) / 255
    train_scaled, val_scaled, train_target, val_target = train_test_split(
        train_scaled, train_target, test_size=0.2, random_state=42)

    model = keras.Sequential()
    model.add(keras.layers.Conv2D(32, kernel_size=3, activation='relu', padding='same',
                                  input_shape=(28, 28, 1)))
    model.add(keras.layers.MaxPooling2D(2, strides=2, padding='valid'))
    model.add(keras.layers.Conv2D(64, kernel_size=3, activation='relu', padding='same'))
    model.add(keras.layers.MaxPooling2D(2, strides=2, padding='valid'))
    model.add(keras.layers.Flatten())
    model.add(keras.layers.Dense(100, activation='relu'))
    model.add(keras.layers.Dropout(0.4))
    model.add(keras.layers.Dense(10, activation='softmax'))
    model.summary()
    assert model.count_params() == 333526

    keras.utils.plot_model(model, show_shapes=True)
    from pathlib import Path

    assert Path("model.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    model.compile(
        optimizer='adam',
        loss='sparse_categorical_crossentropy',
        metrics='accuracy'
    )
    checkpoint_cb = keras.callbacks.ModelCheckpoint(
        'best-cnn-model.h5',
        save_best_only=True
    )
    early_stopping_cb = keras.callbacks.EarlyStopping(
        patience=2,
        restore_best_weights=True
    )
    history = model.fit(train_scaled, train_target, epochs=3,  # test: epochs=3 (seed: 20)
                        validation_data=(val_scaled, val_target),
                        callbacks=[checkpoint_cb, early_stopping_cb])
    import matplotlib.pyplot as plt

    plt.plot(history.history['loss'])
    plt.plot(history.history['val_loss'])
    plt.savefig("curves.png")  # test: plt.show()

    test_scaled = test_input.reshape(-1, 28, 28, 1) / 255
    model.evaluate(test_scaled, test_target)
    test_pred = model.predict(test_scaled)
    fig, axs = plt.subplots(2, 2, figsize=(9, 9))
    for i in range(2):
        axs[i, 0].imshow(test_input[i].reshape(28, 28), cmap='gray_r')
        axs[i, 1].bar(range(1, 11), test_pred[i])
    plt.savefig("bars.png")  # test: plt.show()

    assert test_pred.shape == (100, 10)
    np.testing.assert_allclose(test_pred.sum(axis=1), 1, atol=1e-5)  # softmax bars
    # the checkpoint holds the best epoch, which early stopping restored in memory too
    best = min(history.history["val_loss"])
    loss, acc = model.evaluate(val_scaled, val_target)
    assert abs(loss - best) < 1e-5
    # the tutorials' next step: reload the checkpoint and evaluate it (it comes back compiled)
    saved = keras.models.load_model('best-cnn-model.h5')
    assert abs(saved.evaluate(val_scaled, val_target)[0] - best) < 1e-5
    # a single sample is passed by slicing, as the seed explains
    assert model.predict(test_scaled[0:1]).shape == (1, 10)


def test_seed001_flow_from_directory_fit_and_predict(tmp_path):
    from _keras_folders import write_digit_folders

    write_digit_folders(tmp_path / "data", per_class=(20, 5))
    from cnnkit.keras.models import Sequential
    from cnnkit.keras.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
    from cnnkit.keras.preprocessing.image import ImageDataGenerator

    import torch; torch.manual_seed(0)  # test
    train_datagen = ImageDataGenerator(rescale=1. / 255, rotation_range=10,
                                       width_shift_range=0.1, height_shift_range=0.1,
                                       fill_mode='nearest')
    train_generator = train_datagen.flow_from_directory('data/train', target_size=(24, 24),
                                                        batch_size=3, class_mode='categorical')
    test_datagen = ImageDataGenerator(rescale=1. / 255)
    validation_generator = test_datagen.flow_from_directory('data/validation',
                                                            target_size=(24, 24), batch_size=3,
                                                            class_mode='categorical')
    assert train_generator.class_indices == {"0": 0, "1": 1, "2": 2}
    assert (train_generator.samples, validation_generator.samples) == (60, 15)

    model = Sequential()
    model.add(Conv2D(32, kernel_size=(3, 3), activation='relu', input_shape=(24, 24, 3)))
    model.add(Conv2D(64, (3, 3), activation='relu'))
    model.add(Dropout(0.2))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Flatten())
    model.add(Dense(128, activation='relu'))
    model.add(Dense(3, activation='softmax'))
    assert model.count_params() == 839107
    model.compile(loss='categorical_crossentropy', optimizer='adam', metrics=['accuracy'])

    hist = model.fit_generator(  # Keras 2's name, as the seed writes it
        train_generator,
        steps_per_epoch=20,  # 60 images, 3 a batch (seed: 150 images, 50 steps)
        epochs=3,  # test: 3 (seed: 50)
        validation_data=validation_generator,
        validation_steps=5,  # 15 images, 3 a batch
        verbose=2
    )
    assert len(hist.history["val_accuracy"]) == 3
    assert hist.history["val_accuracy"][-1] > 0.6  # three digit classes, learnt in 3 epochs

    output = model.predict_generator(validation_generator, steps=5)
    assert output.shape == (15, 3)
    np.testing.assert_allclose(output.sum(1), 1, atol=1e-5)
