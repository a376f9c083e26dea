"""Models made of the modern CNN layers (issue 27): a small MobileNet-like Sequential trains,
saves and loads to the same predictions; Keras 3 (torch backend) reads the `.keras` file
cnnkit writes, and cnnkit reads the `.keras` and `.h5` files Keras writes, to the same numbers."""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import numpy as np
import pytest

import cnnkit
from cnnkit import layers as L



@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (12, 16, 16, 3)).astype("uint8")


def _mobilenet_ish():
    return cnnkit.Sequential([
        L.Input((16, 16, 3)),
        L.Conv2D(8, 3, strides=2, padding="same", use_bias=False),
        L.BatchNormalization(),
        L.ReLU(6.0),
        L.DepthwiseConv2D(3, padding="same", use_bias=False),
        L.BatchNormalization(),
        L.ReLU(6.0),
        L.Conv2D(16, 1, groups=2),
        L.SeparableConv2D(16, 3, padding="same", depth_multiplier=2, activation="relu6"),
        L.Conv2D(16, 3, padding="same", dilation_rate=2, activation="hard_silu"),
        L.SpatialDropout2D(0.1),
        L.GlobalMaxPooling2D(keepdims=True),
        L.Reshape((-1,)),
        L.Dropout(0.2, noise_shape=[None, 1]),
        L.Dense(3, activation="softmax"),
    ])


def test_a_mobilenet_like_sequential_trains_saves_and_loads(keras, images, tmp_path):
    model = _mobilenet_ish()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    before = model.predict(images)
    model.fit(images, np.arange(12) % 3, epochs=1, batch_size=12, verbose=0)
    after = model.predict(images)
    assert not np.allclose(before, after)  # one step changed the weights
    np.testing.assert_allclose(after.sum(1), 1, atol=1e-5)
    model.save(tmp_path / "model")
    np.testing.assert_allclose(cnnkit.load(tmp_path / "model").predict(images), after, atol=1e-6)
    # as a Keras file: Keras itself reads it to the same predictions (on x / 255, the
    # preprocessing cnnkit's model applies), and so does cnnkit
    for name in ("model.keras", "model.h5"):
        model.save(tmp_path / name)
        back = keras.models.load_model(tmp_path / name)
        np.testing.assert_allclose(back.predict(images / 255, verbose=0), after, atol=1e-5)
        assert back.count_params() == model.count_params()
    np.testing.assert_allclose(cnnkit.load(tmp_path / "model.keras").predict(images), after,
                               atol=1e-6)


@pytest.fixture(scope="module")
def keras_files(keras, tmp_path_factory):
    """A Keras Sequential of the modern layers, with random weights (batch norm's statistics
    too), saved as .keras and .h5, and its predictions on x / 255."""
    from keras import layers

    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((16, 16, 3)),
        layers.Conv2D(8, 3, strides=2, padding="same", groups=1, activation="swish"),
        layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2),
        layers.BatchNormalization(),
        layers.ReLU(6.0),
        layers.Conv2D(8, 3, padding="same", groups=4, dilation_rate=2),
        layers.SeparableConv2D(12, 3, padding="same", activation="hard_sigmoid"),
        layers.ReLU(max_value=0.8, negative_slope=0.1, threshold=0.2),
        layers.SpatialDropout2D(0.2),
        layers.GlobalAveragePooling2D(keepdims=True),
        layers.Reshape((12,)),
        layers.Dropout(0.2, noise_shape=(None, 1)),
        layers.Dense(4, activation="softmax"),
    ])
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") if "variance" not in v.path
                       else rng.uniform(0.5, 1.5, w.shape).astype("float32")
                       for w, v in zip(model.get_weights(), model.weights)])
    folder = tmp_path_factory.mktemp("modern-keras")
    model.save(folder / "model.keras")
    model.save(folder / "model.h5")
    x = np.random.default_rng(2).integers(0, 256, (8, 16, 16, 3)).astype("uint8")
    return folder, x, model.predict(x / 255, verbose=0), model


@pytest.mark.parametrize("name", ["model.keras", "model.h5"])
def test_keras_files_with_modern_layers_load_and_predict_as_keras_does(keras_files, name):
    from cnnkit.keras.models import load_model

    folder, x, expected, model = keras_files
    ours = cnnkit.load(folder / name)
    np.testing.assert_allclose(ours.predict(x), expected, atol=1e-5)
    assert ours.count_params() == model.count_params()
    twin = load_model(folder / name)
    assert [layer.name for layer in twin.layers] == [layer.name for layer in model.layers]
    np.testing.assert_allclose(twin.predict(x / 255), expected, atol=1e-5)
    for theirs, mine in zip(model.layers, twin.layers):  # Keras's layout, layer by layer
        for a, b in zip(theirs.get_weights(), mine.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_cnnkit_keras_twins_take_keras_arguments(keras):
    from cnnkit.keras import layers

    model = cnnkit.keras.models.Sequential([
        layers.Input((8, 8, 4)),
        layers.DepthwiseConv2D(3, depthwise_initializer="he_normal", bias_initializer="zeros",
                               depthwise_regularizer=None),
        layers.ReLU(6.0),
        layers.SeparableConv2D(6, 3, activation="swish", pointwise_initializer="GlorotUniform"),
        layers.GlobalMaxPooling2D(),
        layers.Dense(2, activation="softmax"),
    ])
    assert [layer.name for layer in model.layers] == [
        "depthwise_conv2d", "re_lu", "separable_conv2d", "global_max_pooling2d", "dense"]
    assert model.layers[1].type == "ReLU" and model.layers[1].max_value == 6.0
    assert model.layers[2].activation == "silu"  # Keras's 'swish'
    reference = keras.Sequential([keras.Input((8, 8, 4)), keras.layers.DepthwiseConv2D(3),
                                  keras.layers.ReLU(6.0), keras.layers.SeparableConv2D(6, 3),
                                  keras.layers.GlobalMaxPooling2D(), keras.layers.Dense(2)])
    assert model.count_params() == reference.count_params()
    with pytest.raises(cnnkit.CnnkitError, match=r"DepthwiseConv2D: unknown argument "
                                                 r"kernels=3; valid: .*depth_multiplier"):
        layers.DepthwiseConv2D(3, kernels=3)


def test_models_saved_with_relu_as_an_activation_still_load(images, tmp_path):
    """Before issue 27 cnnkit.keras's ReLU() was saved as Activation('relu')."""
    old = cnnkit.Sequential([L.Input((16, 16, 3)), L.Conv2D(4, 3), L.Activation("relu"),
                             L.Flatten(), L.Dense(2, activation="softmax")])
    old.save(tmp_path / "old")
    loaded = cnnkit.load(tmp_path / "old")
    assert loaded.layers[1].type == "Activation"
    np.testing.assert_allclose(loaded.predict(images), old.predict(images), atol=1e-6)


MODEL_FILE = """
input_shape: [16, 16, 3]
layers:
  - Conv2D: {filters: 8, kernel_size: 3, strides: 2, padding: same, use_bias: false, groups: 1}
  - BatchNormalization: {}
  - ReLU: {max_value: 6}
  - DepthwiseConv2D: {kernel_size: 3, padding: same, depth_multiplier: 2}
  - SeparableConv2D: {filters: 16, kernel_size: 3, padding: same, activation: hard_silu}
  - Conv2D: {filters: 16, kernel_size: 3, padding: same, dilation_rate: 2, groups: 4}
  - GlobalAveragePooling2D: {keepdims: true}
  - Reshape: {target_shape: [-1]}
  - Dropout: {rate: 0.2, noise_shape: [null, 1]}
  - Dense: {units: 3, activation: softmax}
"""


def test_model_files_name_the_new_layers_and_export_to_onnx(keras, images, tmp_path):
    from keras import layers

    (tmp_path / "mobile.yaml").write_text(MODEL_FILE)
    model = cnnkit.load(tmp_path / "mobile.yaml")
    reference = keras.Sequential([
        keras.Input((16, 16, 3)), layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False),
        layers.BatchNormalization(name="bn"), layers.ReLU(6.0),
        layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2),
        layers.SeparableConv2D(16, 3, padding="same", activation="hard_silu"),
        layers.Conv2D(16, 3, padding="same", dilation_rate=2, groups=4),
        layers.GlobalAveragePooling2D(keepdims=True), layers.Reshape((-1,)),
        layers.Dropout(0.2, noise_shape=(None, 1)), layers.Dense(3, activation="softmax")])
    assert model.count_params() == reference.count_params()
    assert model.output_shape == (3,)
    # export checks onnxruntime against PyTorch first and writes nothing when they differ
    cnnkit.export_onnx(tmp_path / "mobile.yaml", tmp_path / "mobile.onnx")
    assert (tmp_path / "mobile.onnx").is_file()


def test_pytorch_padding_of_a_dilated_conv_saves_as_keras_only_where_it_is_same(keras, images,
                                                                                 tmp_path):
    """padding=2 keeps the size of a 3×3 kernel dilated by 2 (it spans 5): Keras's 'same';
    padding=1 does not, and has no Keras equivalent."""
    same = cnnkit.Sequential([L.Input((16, 16, 3)), L.Conv2D(4, 3, padding=2, dilation_rate=2),
                              L.Flatten(), L.Dense(2, activation="softmax")])
    same.save(tmp_path / "same.keras")
    back = keras.models.load_model(tmp_path / "same.keras")
    assert back.layers[0].padding == "same"
    np.testing.assert_allclose(back.predict(images / 255, verbose=0), same.predict(images),
                               atol=1e-5)
    narrow = cnnkit.Sequential([L.Input((16, 16, 3)), L.Conv2D(4, 3, padding=1, dilation_rate=2),
                                L.Flatten(), L.Dense(2, activation="softmax")])
    with pytest.raises(cnnkit.CnnkitError, match=r"Conv2D 'conv2d': padding=\(1, 1\) has no "
                                                 r"Keras equivalent"):
        narrow.save(tmp_path / "narrow.keras")
    assert not (tmp_path / "narrow.keras").exists()
