"""VGG16, ResNet50, MobileNetV2 and EfficientNetB0 from cnnkit's layers against real Keras 3's
keras.applications (torch backend, weights=None): every layer's name, type, output shape,
parameter count and Connected-to list, the totals Keras's summary prints, and the predictions
of the same weights, copied in Keras's order (so Keras's weight files will map one to one)."""
from __future__ import annotations

import json
import os
import re

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import keras  # noqa: E402  (real Keras 3: a test dependency)
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import cnnkit  # noqa: E402
import cnnkit.keras.applications as kapps  # noqa: E402
import cnnkit.model.applications as apps  # noqa: E402
from cnnkit.errors import CnnkitError  # noqa: E402
from cnnkit.model.summary import format_summary, summary_dict  # noqa: E402

NAMES = ("VGG16", "ResNet50", "MobileNetV2", "EfficientNetB0")


def keras_app(name, **kwargs):
    keras.backend.clear_session()  # Keras's automatic names (global_average_pooling2d) from 0
    return getattr(keras.applications, name)(weights=None, **kwargs)


def keras_rows(model) -> list:
    rows = []
    for layer in model.layers:
        inbound = [t._keras_history.operation.name
                   for node in layer._inbound_nodes for t in node.input_tensors]
        rows.append((layer.name, type(layer).__name__, tuple(layer.output.shape[1:]),
                     layer.count_params(), inbound))
    return rows


def cnnkit_rows(model) -> list:
    return [(r["name"], r["type"], tuple(r["output_shape"]), r["params"], r["connected_to"])
            for r in summary_dict(model)["layers"]]


def keras_totals(model) -> tuple:
    count = lambda weights: sum(int(np.prod(w.shape)) for w in weights)  # noqa: E731
    return count(model.weights), count(model.trainable_weights), count(model.non_trainable_weights)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kwargs", [{}, {"include_top": False, "pooling": "avg",
                                         "input_shape": (96, 96, 3)}], ids=["224", "notop-96"])
def test_every_layer_and_the_totals_equal_keras(name, kwargs):
    theirs = keras_app(name, **kwargs)
    ours = getattr(apps, name)(**kwargs)
    assert ours.name == theirs.name
    assert cnnkit_rows(ours) == keras_rows(theirs)
    d = summary_dict(ours)
    assert (d["total_params"], d["trainable_params"], d["non_trainable_params"]) == keras_totals(theirs)


def test_summary_prints_keras_totals_and_both_inputs_of_an_add():
    theirs, lines = keras_app("ResNet50", input_shape=(64, 64, 3)), []
    theirs.summary(print_fn=lambda line, **kw: lines.append(line))
    text = format_summary(apps.ResNet50(input_shape=(64, 64, 3)))
    for label in ("Total params", "Trainable params", "Non-trainable params"):
        keras_line = re.search(rf"{label}: ([\d,]+)", "\n".join(lines)).group(1)
        assert f"{label}: {keras_line} " in text
    add = text[text.index("conv2_block1_add (Add)"):].splitlines()[:2]
    assert "conv2_block1_0_bn[0][0]" in add[0] and "conv2_block1_3_bn[0][0]" in add[1]


def with_batch_norm_statistics(model, seed=0):
    """Keras's model with every BatchNormalization's four weights drawn away from 1, 0, 0, 1,
    so a statistic read in the wrong slot (or ignored) changes the predictions."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.2, n),
                               rng.normal(0, 0.2, n), rng.uniform(0.5, 1.5, n)])
    return model


@pytest.mark.parametrize("name, size, preprocess", [
    ("MobileNetV2", 96, kapps.mobilenet_v2.preprocess_input),
    ("ResNet50", 64, kapps.resnet50.preprocess_input),
    ("EfficientNetB0", 64, kapps.efficientnet.preprocess_input)])
def test_keras_weights_copied_in_order_give_keras_predictions(name, size, preprocess):
    kwargs = {"input_shape": (size, size, 3), "classes": 7, "classifier_activation": None}
    theirs = with_batch_norm_statistics(keras_app(name, **kwargs))
    ours = getattr(kapps, name)(**kwargs)
    ours.set_weights(theirs.get_weights())  # Keras's flat list, layer by layer, as a file holds it
    pixels = np.random.default_rng(1).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    x = preprocess(pixels)
    want = theirs.predict(x, verbose=0)
    got = ours.predict(x, verbose=0)
    scale = float(np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale)
    assert np.argmax(got, 1).tolist() == np.argmax(want, 1).tolist()


@pytest.mark.parametrize("module, mode", [("vgg16", "caffe"), ("resnet50", "caffe"),
                                          ("resnet", "caffe"), ("mobilenet_v2", "tf")])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_preprocess_input_equals_keras(module, mode, dtype):
    pixels = np.random.default_rng(2).integers(0, 256, (2, 5, 4, 3)).astype(dtype)
    want = getattr(keras.applications, module).preprocess_input(pixels.copy())
    got = getattr(kapps, module).preprocess_input(pixels)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)
    assert got.dtype == np.float32 and pixels.dtype == dtype  # the input is left as it was
    for fmt in ("channels_first", "channels_last"):  # and the 'torch' mode, also per layout
        for m in ("caffe", "torch"):
            arr = np.moveaxis(pixels, -1, 1) if fmt == "channels_first" else pixels
            np.testing.assert_allclose(
                kapps.imagenet_utils.preprocess_input(arr, fmt, mode=m),
                keras.applications.imagenet_utils.preprocess_input(arr.copy(), fmt, mode=m),
                rtol=1e-6, atol=1e-4)


def test_efficientnet_takes_raw_pixels():
    x = np.arange(6.0)
    assert kapps.efficientnet.preprocess_input(x) is x
    assert np.array_equal(keras.applications.efficientnet.preprocess_input(x), x)


def test_keras_namespace_models_are_cnnkit_keras_models():
    model = kapps.MobileNetV2(input_shape=(32, 32, 3), classes=3)
    assert model.name == "mobilenetv2_1.00_32" and model.layers[0].name == "input_layer"
    assert kapps.resnet50.ResNet50 is kapps.ResNet50 and kapps.mobilenet_v2.MobileNetV2 is kapps.MobileNetV2
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).random((4, 32, 32, 3)).astype(np.float32)
    history = model.fit(x, np.array([0, 1, 2, 0]), epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert model.predict(x, verbose=0).shape == (4, 3)


@pytest.mark.parametrize("call, message", [
    (lambda: apps.ResNet50(weights="resnet50.h5"),
     "ResNet50: weights='resnet50.h5'; valid: None (random initialization), 'imagenet', or the "
     "path of a Keras weights file"),
    (lambda: apps.VGG16(input_shape=(31, 64, 3)),
     "VGG16: input_shape=(31, 64, 3); valid: (height, width, channels) with height and width at least 32"),
    (lambda: apps.MobileNetV2(pooling="mean", include_top=False),
     "MobileNetV2: pooling='mean'; valid: None, 'avg', 'max'"),
    (lambda: apps.EfficientNetB0(classes=0), "EfficientNetB0: classes=0; valid: a positive integer"),
    (lambda: apps.MobileNetV2(alpha=-1), "MobileNetV2: alpha=-1; valid: a number > 0"),
])
def test_bad_arguments_are_one_line_naming_the_value(call, message):
    with pytest.raises(CnnkitError) as e:
        call()
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_an_input_tensor_is_the_network_s_input_as_in_keras():
    from cnnkit.layers import Input

    ours = apps.ResNet50(input_tensor=Input((64, 64, 3)), include_top=False)
    assert ours.input_shape == (64, 64, 3) and ours.output_shape == (2, 2, 2048)
    for size in (64, 96):  # Keras names the model by its default size where the input is odd
        theirs = keras_app("MobileNetV2", input_tensor=keras.Input((size, size, 3)), classes=4)
        ours = kapps.MobileNetV2(input_tensor=cnnkit.keras.Input((size, size, 3)), classes=4)
        assert ours.name == theirs.name and ours.output_shape == (4,)


def test_include_top_false_and_max_pooling_ends_where_keras_does():
    for pooling, shape in ((None, (2, 2, 2048)), ("max", (2048,))):
        model = apps.ResNet50(include_top=False, pooling=pooling, input_shape=(64, 64, 3))
        assert model.output_shape == shape
        assert model.layers[-1].name == ("max_pool" if pooling else "conv5_block3_out")


def test_presets_on_the_command_line(tmp_path, capsys):
    from cnnkit.cli import main

    assert main(["summary", "resnet50"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 25,636,712 " in out and "conv5_block3_add[0][0]" in out
    rng = np.random.default_rng(0)  # a CIFAR-sized set: MobileNetV2's smallest input, 32×32
    data = tmp_path / "tiny.npz"
    np.savez(data, x_train=rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8),
             y_train=np.arange(16) % 3, x_test=rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8),
             y_test=np.arange(6) % 3)
    run = tmp_path / "run"
    assert main(["train", "--model", "mobilenetv2", "--dataset", f"npz:{data}", "--epochs", "1",
                 "--batch-size", "8", "--quiet", "--out", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["test_accuracy"] <= 1
    summary = cnnkit.load(run / "best").summary_dict()
    assert summary["input_shape"] == [32, 32, 3] and summary["layers"][-1]["output_shape"] == [3]
