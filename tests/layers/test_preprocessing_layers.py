"""Preprocessing and augmentation layers against real Keras 3 (torch backend): Rescaling,
Normalization (with adapt) and Resizing compute Keras's numbers and count Keras's parameters;
the random layers are the identity at inference, and in training stay within their factor's
range, as Keras's transformations compute it for the same drawn parameters."""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import numpy as np
import pytest
import torch

from cnnkit import layers as L
from cnnkit.errors import CnnkitError
from cnnkit.model.sequential import Sequential

RNG = np.random.default_rng(0)
IMAGES = (RNG.random((6, 9, 11, 3)) * 255).astype("float32")  # NHWC, 0-255, non-square



def _net(layer, shape=IMAGES.shape[1:]):
    """A cnnkit model of one layer: (its torch net, the model)."""
    model = Sequential([L.Input(shape), layer])
    return model.net, model


def _run(net, x, training=False):
    """NHWC numpy in and out, through the NCHW net."""
    net.train(training)
    with torch.no_grad():
        y = net(torch.as_tensor(x).permute(0, 3, 1, 2))
    return y.permute(0, 2, 3, 1).numpy()


def _keras_out(layer, x, training=False):
    return np.asarray(layer(x, training=training).detach().cpu())


# -- Rescaling, Normalization, Resizing: Keras's outputs and counts -------------------------------
@pytest.mark.parametrize("scale, offset", [(1 / 255, 0.0), (1 / 127.5, -1.0)])
def test_rescaling_matches_keras(keras, scale, offset):
    net, model = _net(L.Rescaling(scale, offset))
    want = _keras_out(keras.layers.Rescaling(scale, offset), IMAGES)
    np.testing.assert_allclose(_run(net, IMAGES), want, atol=1e-5)
    assert model.layer_infos()[0].params == 0


@pytest.mark.parametrize("axis", [-1, None])
def test_normalization_adapt_matches_keras(keras, axis):
    ours, theirs = L.Normalization(axis=axis), keras.layers.Normalization(axis=axis)
    ours.adapt(IMAGES)
    theirs.adapt(IMAGES)
    np.testing.assert_allclose(ours.adapted[0], np.ravel(theirs.adapt_mean), rtol=1e-5)
    np.testing.assert_allclose(ours.adapted[1], np.ravel(theirs.adapt_variance), rtol=1e-5)
    net, model = _net(ours)
    np.testing.assert_allclose(_run(net, IMAGES), _keras_out(theirs, IMAGES), atol=1e-5)
    kmodel = keras.Sequential([keras.Input(IMAGES.shape[1:]), theirs])
    info = model.layer_infos()[0]
    assert info.params == kmodel.count_params() == (7 if axis == -1 else 3)


def test_normalization_adapt_after_the_model_is_built_sets_its_weights(keras):
    norm = L.Normalization()
    net, model = _net(norm)
    _run(net, IMAGES)  # built and run with the start statistics (0, 1)
    norm.adapt(IMAGES)
    theirs = keras.layers.Normalization()
    theirs.adapt(IMAGES)
    np.testing.assert_allclose(_run(model.net, IMAGES), _keras_out(theirs, IMAGES), atol=1e-5)


def test_normalization_adapt_on_data_that_does_not_fit_the_built_model_is_one_line():
    norm = L.Normalization()
    net, model = _net(norm)
    with pytest.raises(CnnkitError, match=r"data with 4 channels do not fit the model this "
                                          r"layer is in \(3 channels\)"):
        norm.adapt(np.zeros((2, 5, 5, 4)))
    assert norm.adapted is None and net is not None  # the model, still alive, is unchanged


def test_normalization_adapt_over_batches_equals_whole(keras):
    whole, batched = L.Normalization(), L.Normalization()
    whole.adapt(IMAGES)
    batched.adapt([IMAGES[:2], IMAGES[2:]])
    np.testing.assert_allclose(batched.adapted, whole.adapted, rtol=1e-9)


@pytest.mark.parametrize("invert", [False, True])
def test_normalization_given_statistics_match_keras(keras, invert):
    mean, variance = [100.0, 120.0, 90.0], [400.0, 900.0, 2500.0]
    net, model = _net(L.Normalization(mean=mean, variance=variance, invert=invert))
    theirs = keras.layers.Normalization(mean=mean, variance=variance, invert=invert)
    x = IMAGES if not invert else IMAGES / 255
    np.testing.assert_allclose(_run(net, x), _keras_out(theirs, x), rtol=1e-5, atol=1e-5)
    kmodel = keras.Sequential([keras.Input(IMAGES.shape[1:]), theirs])
    assert model.layer_infos()[0].params == kmodel.count_params() == 0
    assert dict(net.state_dict()) == {}  # config, not weights, as in Keras


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize("size, crop", [((5, 7), False), ((16, 13), False), ((4, 9), True),
                                        ((12, 5), True)])
def test_resizing_matches_keras(keras, interpolation, size, crop):
    layer = L.Resizing(*size, interpolation=interpolation, crop_to_aspect_ratio=crop)
    net, model = _net(layer)
    theirs = keras.layers.Resizing(*size, interpolation=interpolation, crop_to_aspect_ratio=crop)
    want = _keras_out(theirs, IMAGES)
    got = _run(net, IMAGES)
    assert got.shape == want.shape == (len(IMAGES), *size, 3)
    np.testing.assert_allclose(got, want, atol=1e-5 * 255)  # 0-255 values: 1e-5 relative
    np.testing.assert_allclose(_run(net, IMAGES / 255), _keras_out(theirs, IMAGES / 255), atol=1e-5)
    assert model.layer_infos()[0].output_shape == (*size, 3)


# -- augmentation: identity at inference; in training, Keras's transformation ---------------------
AUGMENTERS = [L.RandomFlip(), L.RandomFlip("horizontal"), L.RandomRotation(0.2),
              L.RandomZoom(0.3, 0.1), L.RandomTranslation(0.2, (-0.1, 0.3)),
              L.RandomContrast(0.5), L.RandomRotation(0.1, fill_mode="constant", fill_value=7.0)]


@pytest.mark.parametrize("layer", AUGMENTERS, ids=repr)
def test_augmentation_is_identity_at_inference_and_random_in_training(layer):
    net, _ = _net(layer)
    x = torch.as_tensor(IMAGES).permute(0, 3, 1, 2)
    net.eval()
    assert torch.equal(net(x), x)
    net.train()
    torch.manual_seed(3)
    a = net(x)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert not torch.equal(a, x)
    torch.manual_seed(3)
    assert torch.equal(net(x), a)  # the seed decides
    assert not torch.equal(net(x), a)  # and the next batch draws anew


def test_random_flip_horizontal_gives_the_image_or_its_mirror_and_both_occur():
    net, _ = _net(L.RandomFlip("horizontal"))
    torch.manual_seed(0)
    x = torch.as_tensor(np.concatenate([IMAGES] * 4)).permute(0, 3, 1, 2)  # 24 images
    y = _run(net, x.permute(0, 2, 3, 1).numpy(), training=True)
    x = x.permute(0, 2, 3, 1).numpy()
    same = [np.array_equal(a, b) for a, b in zip(y, x)]
    mirrored = [np.array_equal(a, b[:, ::-1]) for a, b in zip(y, x)]
    assert all(s or m for s, m in zip(same, mirrored))
    assert any(same) and any(mirrored)


def test_random_flip_both_axes_flips_both_together_as_keras():
    """Keras draws one flag per image for 'horizontal_and_vertical': unchanged or turned 180°."""
    net, _ = _net(L.RandomFlip())
    torch.manual_seed(1)
    y = _run(net, IMAGES, training=True)
    turned = [np.array_equal(a, b[::-1, ::-1]) for a, b in zip(y, IMAGES)]
    same = [np.array_equal(a, b) for a, b in zip(y, IMAGES)]
    assert all(s or t for s, t in zip(same, turned)) and any(turned)


def test_random_rotation_by_a_quarter_turn_is_a_rotated_image():
    square = IMAGES[:, :9, :9] / 255
    net, _ = _net(L.RandomRotation((0.25, 0.25)), square.shape[1:])
    y = _run(net, square, training=True)
    np.testing.assert_allclose(y, np.rot90(square, k=1, axes=(1, 2)), atol=1e-5)


def _keras_transform(keras, layer, x, transformation):
    return np.asarray(layer.transform_images(keras.ops.convert_to_tensor(x), transformation,
                                             training=True).detach().cpu())


@pytest.mark.parametrize("fill_mode", ["reflect", "wrap", "constant", "nearest"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_random_rotation_equals_keras_for_a_fixed_angle(keras, fill_mode, interpolation):
    x = IMAGES / 255
    kw = dict(fill_mode=fill_mode, interpolation=interpolation, fill_value=0.5)
    net, _ = _net(L.RandomRotation((0.1, 0.1), **kw))
    theirs = keras.layers.RandomRotation((0.1, 0.1), **kw)
    want = _keras_transform(keras, theirs, x, theirs.get_random_transformation(x))
    np.testing.assert_allclose(_run(net, x, training=True), want, atol=1e-4)


@pytest.mark.parametrize("fill_mode", ["reflect", "wrap", "constant", "nearest"])
@pytest.mark.parametrize("factors", [((0.3, 0.3), (-0.2, -0.2)), ((-0.25, -0.25), None)])
def test_random_zoom_equals_keras_for_fixed_factors(keras, fill_mode, factors):
    x = IMAGES / 255
    net, _ = _net(L.RandomZoom(*factors, fill_mode=fill_mode, fill_value=0.25))
    theirs = keras.layers.RandomZoom(*factors, fill_mode=fill_mode, fill_value=0.25)
    want = _keras_transform(keras, theirs, x, theirs.get_random_transformation(x))
    np.testing.assert_allclose(_run(net, x, training=True), want, atol=1e-4)


@pytest.mark.parametrize("fill_mode", ["reflect", "wrap", "constant", "nearest"])
def test_random_translation_equals_keras_for_fixed_factors(keras, fill_mode):
    x = IMAGES / 255
    factors = ((0.25, 0.25), (-0.15, -0.15))
    net, _ = _net(L.RandomTranslation(*factors, fill_mode=fill_mode))
    theirs = keras.layers.RandomTranslation(*factors, fill_mode=fill_mode)
    want = _keras_transform(keras, theirs, x, theirs.get_random_transformation(x))
    np.testing.assert_allclose(_run(net, x, training=True), want, atol=1e-4)


def test_random_rotation_stays_within_its_factor():
    """A small turn moves the centre pixel little; corners of a 0.5-turn move far."""
    x = np.zeros((64, 9, 9, 1), "float32")
    x[:, 4, 6] = 1.0  # one dot 2 pixels right of the centre
    net, _ = _net(L.RandomRotation(0.05, fill_mode="constant"), (9, 9, 1))
    torch.manual_seed(0)
    y = _run(net, x, training=True)[..., 0]
    ys, xs = np.meshgrid(np.arange(9), np.arange(9), indexing="ij")
    angles = [np.degrees(np.arctan2(-(np.sum(img * ys) / img.sum() - 4),
                                    np.sum(img * xs) / img.sum() - 4)) for img in y]
    assert max(abs(a) for a in angles) <= 18.0 + 1.0  # 0.05 turns = 18°
    assert max(abs(a) for a in angles) > 9.0  # and the range is used


def test_random_contrast_keeps_each_images_channel_means_and_keras_range(keras):
    x = torch.as_tensor(IMAGES / 255 * 0.5 + 0.25).permute(0, 3, 1, 2)  # no clipping in [0, 1]
    net, _ = _net(L.RandomContrast((0.4, 0.4), value_range=(0, 1)))
    net.train()
    torch.manual_seed(0)
    y = net(x)
    torch.testing.assert_close(y.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=1e-6, rtol=0)
    mean = x.mean(dim=(2, 3), keepdim=True)
    factor = ((y - mean) / (x - mean)).flatten(1)  # one factor per image
    assert torch.allclose(factor, factor[:, :1], atol=1e-3)
    assert ((factor >= 0.6 - 1e-4) & (factor <= 1.4 + 1e-4)).all()
    # one number f: Keras 3 draws the factor in [1, 1 + f]
    assert keras.layers.RandomContrast(0.3).factor == (0, 0.3) == L.RandomContrast(0.3).range


def test_random_contrast_clips_to_the_value_range():
    net, _ = _net(L.RandomContrast((1.0, 1.0)))
    torch.manual_seed(0)
    y = _run(net, IMAGES, training=True)
    assert y.min() >= 0 and y.max() <= 255


# -- arguments: Keras's forms, one clear line for a bad one --------------------------------------
@pytest.mark.parametrize("make, words", [
    (lambda: L.RandomRotation(1.5), "factor must be a number in [-1, 1]"),
    (lambda: L.RandomRotation(0.1, fill_mode="mirror"), "fill_mode='mirror' is not supported; "
     "valid: 'reflect', 'wrap', 'constant', 'nearest'"),
    (lambda: L.RandomZoom(0.1, interpolation="bicubic"), "interpolation='bicubic'"),
    (lambda: L.RandomZoom(-1.0), "height_factor must be in (-1, 1]"),
    (lambda: L.RandomTranslation(0.1, (0.1, 0.2, 0.3)), "width_factor must be"),
    (lambda: L.RandomContrast(-0.2), "factor must be a number in [0, 1]"),
    (lambda: L.RandomContrast(0.2, value_range=(1, 0)), "low < high"),
    (lambda: L.RandomFlip("diagonal"), "mode='diagonal' is not supported"),
    (lambda: L.RandomFlip(seed=1.5), "seed must be an integer or None"),
    (lambda: L.Resizing(32, 32, interpolation="lanczos3"), "not supported: 'area', 'lanczos3'"),
    (lambda: L.Resizing(0, 32), "height must be a positive integer"),
    (lambda: L.Rescaling("1/255"), "scale must be a finite number"),
    (lambda: L.Normalization(mean=[1.0]), "mean and variance are given together"),
    (lambda: L.Normalization(axis=1), "axis=1 is not supported"),
    (lambda: L.Normalization(mean=[0, 0], variance=[1, -1]), "variance must be"),
])
def test_bad_arguments_are_one_line(make, words):
    with pytest.raises(CnnkitError) as e:
        make()
    assert words in str(e.value) and "\n" not in str(e.value)


def test_normalization_statistics_must_fit_the_channels():
    with pytest.raises(CnnkitError, match="2 means do not fit an input of 3 channels"):
        Sequential([L.Input((4, 4, 3)), L.Normalization(mean=[0, 1], variance=[1, 1])]).layer_infos()


@pytest.mark.parametrize("layer", AUGMENTERS + [L.Rescaling(0.5, 1.0), L.Resizing(4, 5, "nearest", True),
                                                L.Normalization(axis=None, mean=3.0, variance=4.0)],
                         ids=repr)
def test_config_rebuilds_the_layer_and_model_files_name_it(layer):
    again = L.layer_from_config(L.layer_to_config(layer))
    assert type(again) is type(layer) and again.get_config() == layer.get_config()
    assert set(L.LAYER_TYPES) >= {"Rescaling", "Normalization", "Resizing", "RandomFlip",
                                  "RandomRotation", "RandomZoom", "RandomTranslation",
                                  "RandomContrast"}


def test_summary_of_preprocessing_layers_needs_no_torch():
    import subprocess
    import sys

    code = ("import sys\nfrom cnnkit import layers as L\nfrom cnnkit.model.sequential import Sequential\n"
            "m = Sequential([L.Input((8, 8, 3)), L.RandomFlip(), L.RandomRotation(0.1), L.RandomZoom(0.1),"
            " L.RandomTranslation(0.1, 0.1), L.RandomContrast(0.2), L.Resizing(4, 4), L.Rescaling(1 / 255),"
            " L.Normalization(), L.Flatten()])\n"
            "m.summary(explain=True, print_fn=lambda *a: None)\n"
            "assert m.count_params() == 7, m.count_params()\nassert 'torch' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("suffix, text", [
    (".yaml", """input_shape: [9, 11, 3]
layers:
  - RandomFlip: {mode: horizontal}
  - RandomRotation: {factor: [-0.1, 0.2], fill_mode: constant, fill_value: 0.5}
  - Resizing: {height: 8, width: 8}
  - Rescaling: {scale: 0.5, offset: -1}
  - Normalization: {mean: [0.1, 0.2, 0.3], variance: [1, 2, 3]}
  - Flatten: {}
  - Dense: {units: 2, activation: softmax}
"""),
    (".toml", """input_shape = [9, 11, 3]
[[layers]]
RandomFlip = {mode = "horizontal"}
[[layers]]
RandomRotation = {factor = [-0.1, 0.2], fill_mode = "constant", fill_value = 0.5}
[[layers]]
Resizing = {height = 8, width = 8}
[[layers]]
Rescaling = {scale = 0.5, offset = -1}
[[layers]]
Normalization = {mean = [0.1, 0.2, 0.3], variance = [1, 2, 3]}
[[layers]]
Flatten = {}
[[layers]]
Dense = {units = 2, activation = "softmax"}
"""),
])
def test_model_files_name_the_layers_and_saved_models_reload_them(tmp_path, suffix, text):
    import cnnkit
    from cnnkit.model.files import load_model_file

    path = tmp_path / f"model{suffix}"
    path.write_text(text)
    model = load_model_file(path)
    assert [layer.type for layer in model.layers][:5] == [
        "RandomFlip", "RandomRotation", "Resizing", "Rescaling", "Normalization"]
    assert model.layers[1].range == (-0.1, 0.2) and model.count_params() == 8 * 8 * 3 * 2 + 2
    model.save(tmp_path / "saved")
    again = cnnkit.load(tmp_path / "saved")
    assert again.get_config()["layers"] == model.get_config()["layers"]
    np.testing.assert_allclose(again(IMAGES), model(IMAGES), atol=1e-6)


def test_onnx_export_of_a_model_with_every_layer_matches_pytorch(tmp_path):
    """At inference the random layers are the identity, so the exported graph is the model's."""
    from cnnkit.serve.onnx import export_onnx

    model = Sequential([L.Input((16, 16, 3)), *AUGMENTERS, L.Resizing(8, 8), L.Rescaling(1 / 255),
                        L.Normalization(mean=[0.5] * 3, variance=[0.1] * 3), L.Conv2D(4, 3),
                        L.Flatten(), L.Dense(3, activation="softmax")])
    report = export_onnx(model, tmp_path / "model.onnx")
    assert report.checked > 1000 and report.max_abs_diff < report.tolerance


def test_affine_layers_keep_the_trainers_channels_last_layout():
    net, _ = _net(L.RandomRotation(0.1, fill_mode="constant"))
    x = torch.as_tensor(IMAGES).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    net.train()
    y = net(x)
    assert y.is_contiguous(memory_format=torch.channels_last) and y.shape == x.shape
