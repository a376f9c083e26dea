"""Pretrained weights for the four applications (issue 28, item 1): a Keras weights file (Keras
3's `.weights.h5`, or the legacy HDF5 layout Keras's published ImageNet files use) loads by
layer name and predicts what real Keras 3 predicts with the same file; `weights='imagenet'`
fetches Keras's file from a local HTTP server standing in for Keras's storage (a mismatched
checksum refused, a dropped transfer resumed, a cached file reused); decode_predictions is
Keras's. No internet: this machine cannot reach Keras's storage."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import h5py  # noqa: E402
import keras  # noqa: E402  (real Keras 3: a test dependency)
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras.src.legacy.saving import legacy_h5_format  # noqa: E402  (how Keras writes legacy h5)

import cnnkit.keras.applications as kapps  # noqa: E402
import cnnkit.model.applications as apps  # noqa: E402
from cnnkit.errors import CnnkitError  # noqa: E402
from cnnkit.model.applications import pretrained  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))  # the download tests' local server
from _http_server import FileServer, dead_url  # noqa: E402
from test_applications import keras_app, with_batch_norm_statistics  # noqa: E402

SIZES = {"VGG16": 64, "ResNet50": 64, "MobileNetV2": 96, "EfficientNetB0": 64}


@functools.lru_cache(maxsize=None)
def keras_net(name, include_top=True):
    """Keras's network at a small size with its batch-norm statistics drawn (built once per
    module: the tests only read it)."""
    size = SIZES[name]
    return with_batch_norm_statistics(keras_app(name, input_shape=(size, size, 3),
                                                include_top=include_top))


def legacy_h5(model, path, tf_names=False):
    """Keras's legacy layout (groups per layer name, `layer_names`/`weight_names`), written by
    Keras's own code; `tf_names`: the weights named `kernel:0` as the published ImageNet files
    (written by TensorFlow-era Keras) name them."""
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
        if tf_names:
            for name in f.attrs["layer_names"]:
                g = f[name]
                names = list(g.attrs["weight_names"])
                for n in names:
                    g.move(n, f"{n}:0")
                g.attrs["weight_names"] = [f"{n}:0".encode() for n in names]
    return path


def save(model, tmp_path, kind):
    if kind == "weights.h5":
        path = tmp_path / "net.weights.h5"
        model.save_weights(path)
        return path
    return legacy_h5(model, tmp_path / "net.h5", tf_names=kind == "published-h5")


def pixels(size, seed=1):
    return np.random.default_rng(seed).uniform(-1, 1, (2, size, size, 3)).astype(np.float32)


def assert_same(got, want):
    scale = float(np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("name", list(SIZES))
@pytest.mark.parametrize("kind", ["weights.h5", "published-h5"])
def test_a_keras_weights_file_predicts_as_keras_with_and_without_top(name, kind, tmp_path):
    size = SIZES[name]
    theirs = keras_net(name)
    path = save(theirs, tmp_path, kind)
    x = pixels(size)
    ours = getattr(kapps, name)(weights=str(path), input_shape=(size, size, 3))
    assert_same(ours.predict(x, verbose=0), theirs.predict(x, verbose=0))
    # include_top=False reads the full network's file, skipping the top (Keras's _notop files)
    base = getattr(apps, name)(weights=path, include_top=False, input_shape=(size, size, 3))
    last = base.layer_names()[-1]
    features = keras.Model(theirs.inputs, theirs.get_layer(last).output).predict(x, verbose=0)
    assert_same(base(x), features)


def test_keras_legacy_writer_s_own_names_load_too(tmp_path):
    theirs = with_batch_norm_statistics(keras_app("ResNet50", input_shape=(64, 64, 3),
                                                  classes=7, classifier_activation=None))
    ours = kapps.ResNet50(weights=save(theirs, tmp_path, "h5"), input_shape=(64, 64, 3),
                          classes=7, classifier_activation=None)
    assert_same(ours.predict(pixels(64), verbose=0), theirs.predict(pixels(64), verbose=0))


def test_a_keras_file_s_weights_load_as_keras_s_load_weights_takes_them(tmp_path):
    theirs = keras_net("MobileNetV2")
    theirs.save(tmp_path / "net.keras")
    ours = kapps.MobileNetV2(weights=tmp_path / "net.keras", input_shape=(96, 96, 3))
    assert_same(ours.predict(pixels(96), verbose=0), theirs.predict(pixels(96), verbose=0))


def test_a_file_that_does_not_fit_is_one_line_naming_the_layer(tmp_path):
    resnet = save(keras_app("ResNet50", input_shape=(64, 64, 3)), tmp_path, "published-h5")
    cases = [(lambda: apps.ResNet50(weights=resnet, input_shape=(64, 64, 3), classes=5),
              "layer 'predictions': Dense: weight of shape (2048, 1000) does not fit (2048, 5)"),
             (lambda: apps.VGG16(weights=resnet, input_shape=(64, 64, 3)),
              "no weights for layer 'block1_conv1' (Conv2D)")]
    for call, message in cases:
        with pytest.raises(CnnkitError) as e:
            call()
        assert str(e.value) == f"{resnet}: {message}"


@pytest.mark.parametrize("kwargs, message", [
    ({"weights": "/no/such.h5"}, "weights='/no/such.h5'; valid: None (random initialization), "
                                 "'imagenet', or the path of a Keras weights file"),
    ({"weights": "imagenet", "classes": 10},
     "classes=10 with weights='imagenet' and include_top=True; valid: 1000"),
    ({"weights": "imagenet", "input_shape": (160, 160, 3)},
     "input_shape=(160, 160, 3) with weights='imagenet' and include_top=True; valid: (224, 224, 3)"),
    ({"weights": "imagenet", "include_top": False, "input_shape": (64, 64, 1)},
     "input_shape=(64, 64, 1) with weights='imagenet'; valid: 3 (RGB) channels"),
    ({"weights": "imagenet", "classifier_activation": "relu"},
     "classifier_activation='relu' with pretrained weights; valid: 'softmax' or None"),
])
def test_keras_s_rules_for_weights_are_one_line(kwargs, message):
    with pytest.raises(CnnkitError) as e:
        apps.ResNet50(**kwargs)
    assert str(e.value).startswith(f"ResNet50: {message}") and "\n" not in str(e.value)
    with pytest.raises(CnnkitError, match=r"alpha=0\.6 with weights='imagenet'; valid: 0\.35"):
        apps.MobileNetV2(weights="imagenet", alpha=0.6)


NOTOP = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """Keras's notop ResNet50 file (random weights, Keras's layout) served under its Keras
    name on 127.0.0.1, cnnkit's cache in tmp_path."""
    theirs = keras_net("ResNet50", include_top=False)
    data = save(theirs, tmp_path, "published-h5").read_bytes()
    monkeypatch.setenv("CNNKIT_DATA", str(tmp_path / "cache"))
    with FileServer({NOTOP: data}) as srv:
        monkeypatch.setenv(pretrained.MIRROR_ENV, srv.base)
        srv.theirs, srv.md5 = theirs, hashlib.md5(data).hexdigest()
        yield srv


def imagenet_resnet():
    return kapps.ResNet50(weights="imagenet", include_top=False, input_shape=(64, 64, 3))


def test_a_file_whose_checksum_is_not_keras_s_is_refused_and_not_cached(mirror, tmp_path):
    assert pretrained.CHECKSUMS[NOTOP] == "4d473c1dd8becc155b73f8504c6f6626"  # Keras's own
    with pytest.raises(CnnkitError) as e:
        imagenet_resnet()
    assert f"could not download {NOTOP}: 127.0.0.1:{mirror.port}: MD5 mismatch (got " \
           f"{mirror.md5[:12]}..., expected 4d473c1dd8be...)" in str(e.value)
    assert "\n" not in str(e.value) and not list((tmp_path / "cache" / "models").iterdir())


def test_imagenet_downloads_resumes_and_then_reuses_the_cache(mirror, tmp_path, monkeypatch):
    monkeypatch.setitem(pretrained.CHECKSUMS, NOTOP, mirror.md5)  # the file this test made
    mirror.mode[NOTOP] = "drop_once"
    ours = imagenet_resnet()
    assert [r for _, r in mirror.requests][:2] == [None, f"bytes={len(mirror.files[NOTOP]) // 2}-"]
    assert_same(ours.predict(pixels(64), verbose=0), mirror.theirs.predict(pixels(64), verbose=0))
    assert (tmp_path / "cache" / "models" / NOTOP).read_bytes() == mirror.files[NOTOP]
    monkeypatch.setenv(pretrained.MIRROR_ENV, dead_url(""))  # no network: the cache serves
    again = imagenet_resnet()
    assert_same(again.predict(pixels(64), verbose=0), ours.predict(pixels(64), verbose=0))


def test_the_imagenet_file_names_are_keras_s():
    assert pretrained.imagenet_file("VGG16", True) == "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
    assert pretrained.imagenet_file("MobileNetV2", False, 0.35, 96) == \
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"
    assert pretrained.imagenet_file("EfficientNetB0", False) == "efficientnetb0_notop.h5"
    assert pretrained.KERAS_FILES[NOTOP][0] == keras.src.applications.resnet.BASE_WEIGHTS_PATH + NOTOP


def test_decode_predictions_equals_keras(tmp_path, monkeypatch):
    index = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}
    data = json.dumps(index).encode()
    monkeypatch.setenv("CNNKIT_DATA", str(tmp_path))
    monkeypatch.setitem(pretrained.CHECKSUMS, "imagenet_class_index.json",
                        hashlib.md5(data).hexdigest())
    monkeypatch.setattr(keras.src.applications.imagenet_utils, "CLASS_INDEX", index)
    preds = np.random.default_rng(0).random((3, 1000)).astype(np.float32)
    with FileServer({"imagenet_class_index.json": data}) as srv:
        monkeypatch.setenv(pretrained.MIRROR_ENV, srv.base)
        got = kapps.vgg16.decode_predictions(preds, top=3)
    assert got == keras.applications.imagenet_utils.decode_predictions(preds, top=3)
    assert got[0][0][1] == f"class_{preds[0].argmax()}"
    with pytest.raises(CnnkitError, match=r"of shape \(3, 10\); valid: \(samples, 1000\)"):
        kapps.resnet50.decode_predictions(preds[:, :10])


def test_mobilenet_s_files_keras_publishes_without_checksum_load_whole_only(tmp_path, monkeypatch):
    """Keras gives no checksum for MobileNetV2's files and takes them as they come; cnnkit too,
    but a transfer cut short (the server promising more than it sends) is never published."""
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"
    assert pretrained.CHECKSUMS[name] is None
    theirs = keras_net("MobileNetV2", include_top=False)
    data = save(theirs, tmp_path, "published-h5").read_bytes()
    monkeypatch.setenv("CNNKIT_DATA", str(tmp_path / "cache"))
    build = lambda: kapps.MobileNetV2(weights="imagenet", include_top=False,  # noqa: E731
                                      input_shape=(96, 96, 3))
    with FileServer({name: data}) as srv:
        monkeypatch.setenv(pretrained.MIRROR_ENV, srv.base)
        srv.mode[name] = "truncate"
        with pytest.raises(CnnkitError, match=f"could not download {name}: "):
            build()
        assert not (tmp_path / "cache" / "models" / name).exists()
        srv.mode[name] = "ok"
        ours = build()
    assert_same(ours.predict(pixels(96), verbose=0), theirs.predict(pixels(96), verbose=0))


def test_efficientnet_s_imagenet_input_scaling_is_keras_s(tmp_path, monkeypatch):
    """Keras's published EfficientNet files hold ImageNet's std as Normalization's variance;
    with weights='imagenet' Keras divides by sqrt(std) once more (a Rescaling after the
    Normalization). Reference: Keras's network from the same file with that variance times the
    std, the same function, computed by Keras."""
    name, std = "efficientnetb0_notop.h5", np.array([0.229, 0.224, 0.225], np.float32)
    theirs = with_batch_norm_statistics(keras_app("EfficientNetB0", include_top=False,
                                                  input_shape=(64, 64, 3)))
    norm = next(l for l in theirs.layers if isinstance(l, keras.layers.Normalization))
    mean, variance = np.array([0.485, 0.456, 0.406], np.float32), std.copy()
    norm.set_weights([mean, variance, np.array(0)])  # what the published file holds
    data = save(theirs, tmp_path, "published-h5").read_bytes()
    monkeypatch.setenv("CNNKIT_DATA", str(tmp_path / "cache"))
    monkeypatch.setitem(pretrained.CHECKSUMS, name, hashlib.md5(data).hexdigest())
    with FileServer({name: data}) as srv:
        monkeypatch.setenv(pretrained.MIRROR_ENV, srv.base)
        ours = kapps.EfficientNetB0(weights="imagenet", include_top=False, input_shape=(64, 64, 3))
    norm.set_weights([mean, variance * std, np.array(0)])
    x = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    assert_same(ours.predict(x, verbose=0), theirs.predict(x, verbose=0))
    assert ours.layer_names()[:4] == ["input_layer", "rescaling", "normalization",
                                                   "rescaling_1"]
