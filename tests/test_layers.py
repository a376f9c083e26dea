"""Layer specs: Keras parity of shapes, parameter counts and values; clear errors."""
import json
import math

import numpy as np
import pytest
import torch

from cnnkit import layers as L
from cnnkit.errors import CnnkitError
from cnnkit.layers import same_padding
from cnnkit.model.sequential import Sequential


# -- an independent reference: direct NumPy convolution / pooling with Keras's 'same' rule ----
def np_pad_amounts(size, k, s, padding):
    if padding == "valid":
        return 0, 0
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def np_conv2d(x, kernel, bias, strides, padding):
    """x (N,H,W,C), kernel (kh,kw,C,F): the textbook sum of element-wise products plus bias."""
    kh, kw, _, f = kernel.shape
    sh, sw = strides
    (t, b), (l, r) = (np_pad_amounts(x.shape[1], kh, sh, padding),
                      np_pad_amounts(x.shape[2], kw, sw, padding))
    xp = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
    oh, ow = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
    y = np.zeros((x.shape[0], oh, ow, f))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * sh:i * sh + kh, j * sw:j * sw + kw, :]
            y[:, i, j, :] = np.tensordot(patch, kernel, axes=([1, 2, 3], [0, 1, 2]))
    return y + (0 if bias is None else bias)


def np_pool(x, pool, strides, padding, op):
    ph, pw = pool
    sh, sw = strides
    (t, b), (l, r) = (np_pad_amounts(x.shape[1], ph, sh, padding),
                      np_pad_amounts(x.shape[2], pw, sw, padding))
    xp = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=np.nan)
    oh, ow = (xp.shape[1] - ph) // sh + 1, (xp.shape[2] - pw) // sw + 1
    y = np.zeros((x.shape[0], oh, ow, x.shape[3]))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * sh:i * sh + ph, j * sw:j * sw + pw, :]
            y[:, i, j, :] = (np.nanmax if op == "max" else np.nanmean)(patch, axis=(1, 2))
    return y


CASES = [(size, k, s, pad) for size in (5, 6, 7, 8, 11) for k in (1, 2, 3, 4, 5)
         for s in (1, 2, 3) for pad in ("same", "valid") if not (pad == "valid" and k > size)]


@pytest.mark.parametrize("size,k,s,padding", CASES)
def test_conv_matches_numpy_reference(size, k, s, padding):
    rng = np.random.default_rng(size * 100 + k * 10 + s)
    x = rng.normal(size=(2, size, size + 1, 2)).astype(np.float32)
    kernel = rng.normal(size=(k, k, 2, 3)).astype(np.float32)
    bias = rng.normal(size=3).astype(np.float32)
    model = Sequential([L.Conv2D(3, k, strides=s, padding=padding)], input_shape=x.shape[1:])
    model.set_layer_weights(0, [kernel, bias])
    expected = np_conv2d(x, kernel, bias, (s, s), padding)
    assert model.output_shape == expected.shape[1:]
    np.testing.assert_allclose(model(x), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size,k,s,padding", [c for c in CASES if c[1] >= 2])
@pytest.mark.parametrize("op", ["max", "avg"])
def test_pooling_matches_numpy_reference(size, k, s, padding, op):
    x = np.random.default_rng(k + s).normal(size=(2, size, size + 2, 3)).astype(np.float32)
    layer = (L.MaxPooling2D if op == "max" else L.AveragePooling2D)(k, s, padding)
    model = Sequential([layer], input_shape=x.shape[1:])
    expected = np_pool(x, (k, k), (s, s), padding, op)
    np.testing.assert_allclose(model(x), expected, rtol=1e-5, atol=1e-5)


def test_same_padding_is_asymmetric_like_keras():
    # 7 wide, kernel 4, stride 2: output 4, total padding 3 -> 1 before, 2 after
    assert same_padding(7, 4, 2) == (1, 2)
    assert same_padding(8, 3, 2) == (0, 1)
    assert same_padding(28, 3, 1) == (1, 1)


def test_keras_reference_shapes_and_params(keras_reference):
    cases = json.loads((keras_reference / "shapes.json").read_text())["cases"]
    assert len(cases) == 150
    for i, case in enumerate(cases):
        model = Sequential.from_config({"input_shape": case["input_shape"], "layers": case["layers"]})
        infos = model.layer_infos()
        for info, ref in zip(infos, case["keras"], strict=True):
            assert info.layer.type == ref["type"]
            assert list(info.output_shape) == ref["output_shape"], (i, info.name)
            assert info.params == ref["params"], (i, info.name)
            assert info.trainable == ref["trainable_params"], (i, info.name)
        assert model.count_params() == case["total_params"]
        # the built torch module agrees with shape inference and the parameter count
        net = model.build()
        n = sum(p.numel() for p in net.parameters()) + sum(
            b.numel() for name, b in net.named_buffers() if "running" in name)
        assert n == case["total_params"], i
        out = net.eval()(torch.zeros(2, *reversed(case["input_shape"])).permute(0, 1, 3, 2))
        assert tuple(out.shape[1:]) == tuple(case["keras"][-1]["output_shape"])


def test_keras_reference_values(keras_reference_values):
    cases, arrays = keras_reference_values
    assert len(cases) == 30
    for case in cases:
        key = case["key"]
        x = arrays[f"{key}_x"]
        model = Sequential.from_config({"input_shape": list(x.shape[1:]), "layers": [case["layer"]]})
        if "Conv2D" in case["layer"]:
            weights = [arrays[f"{key}_kernel"]]
            if f"{key}_bias" in arrays:
                weights.append(arrays[f"{key}_bias"])
            model.set_layer_weights(0, weights)
        y = model(x)
        assert y.shape == tuple(case["y_shape"]), key
        np.testing.assert_allclose(y, arrays[f"{key}_y"], rtol=1e-5, atol=1e-5, err_msg=key)


def test_seed003_worked_convolution_example():
    # seed 003: [[1,2,3],[2,1,0],[3,0,1]] * [[1,0],[1,0]] = [[3,3],[5,1]]; + bias 5 = [[8,8],[10,6]]
    model = Sequential([L.Conv2D(1, 2)], input_shape=(3, 3, 1))
    model.set_layer_weights(0, [np.array([[1, 0], [1, 0]], np.float32).reshape(2, 2, 1, 1),
                                np.array([5.0], np.float32)])
    x = np.array([[1, 2, 3], [2, 1, 0], [3, 0, 1]], np.float32).reshape(3, 3, 1)
    assert model(x)[..., 0].tolist() == [[8, 8], [10, 6]]


def test_seed001_worked_max_pooling_example():
    x = np.array([[1, 0, 4, 1], [0, 2, 1, 2], [2, 3, 1, 0], [4, 1, 2, 3]], np.float32)
    model = Sequential([L.MaxPooling2D(2)], input_shape=(4, 4, 1))
    assert model(x.reshape(4, 4, 1))[..., 0].tolist() == [[2, 4], [4, 3]]


def test_pytorch_style_pool_padding_seed003():
    model = Sequential([L.MaxPooling2D(2, 2, padding=1)], input_shape=(7, 7, 128))
    assert model.output_shape == (4, 4, 128)
    x = -np.ones((7, 7, 128), np.float32)  # negative values: -inf padding must never win
    assert (model(x) == -1).all()


def test_dense_acts_on_last_axis():
    model = Sequential([L.Dense(5)], input_shape=(4, 3, 2))
    assert model.output_shape == (4, 3, 5) and model.count_params() == 15
    x = np.random.default_rng(0).normal(size=(4, 3, 2)).astype(np.float32)
    (kernel, bias), = model.get_weights()
    np.testing.assert_allclose(model(x), x @ kernel + bias, rtol=1e-5, atol=1e-6)


def test_flatten_uses_keras_order():
    model = Sequential([L.Flatten()], input_shape=(2, 2, 3))
    x = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    assert model(x).tolist() == x.reshape(-1).tolist()


@pytest.mark.parametrize("name,fn", [
    ("relu", lambda x: np.maximum(x, 0)), ("leaky_relu", lambda x: np.where(x > 0, x, 0.01 * x)),
    ("sigmoid", lambda x: 1 / (1 + np.exp(-x))), ("tanh", np.tanh), ("linear", lambda x: x),
    ("elu", lambda x: np.where(x > 0, x, np.exp(x) - 1)),
])
def test_activations(name, fn):
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(2, 2, 3)
    np.testing.assert_allclose(Sequential([L.Activation(name)], input_shape=(2, 2, 3))(x), fn(x),
                               rtol=1e-5, atol=1e-6)


def test_softmax_over_channels_and_leaky_relu_slope():
    x = np.random.default_rng(1).normal(size=(2, 2, 4)).astype(np.float32)
    y = Sequential([L.Activation("softmax")], input_shape=(2, 2, 4))(x)
    np.testing.assert_allclose(y.sum(-1), 1, rtol=1e-6)
    y = Sequential([L.LeakyReLU(negative_slope=0.2)], input_shape=(2, 2, 4))(x)
    np.testing.assert_allclose(y, np.where(x > 0, x, 0.2 * x), rtol=1e-6)


def test_batchnorm_params_keras_split():
    model = Sequential([L.BatchNormalization()], input_shape=(5, 5, 8))
    info, = model.layer_infos()
    assert (info.trainable, info.non_trainable) == (16, 16)


@pytest.mark.parametrize("make,message", [
    (lambda: L.Conv2D(-3, 3), "filters=-3"),
    (lambda: L.Conv2D(0, 3), "filters=0"),
    (lambda: L.Conv2D(8, (3, 0)), "kernel_size=(3, 0)"),
    (lambda: L.Conv2D(8, 3, padding="full"), "'full'"),
    (lambda: L.Conv2D(8, 3, activation="relux"), "unknown activation 'relux'"),
    (lambda: L.Dense(10, activation="softmaxx"), "valid: linear, relu"),
    (lambda: L.Dropout(1.5), "rate=1.5"),
    (lambda: L.MaxPooling2D(2, strides=-1), "strides=-1"),
    (lambda: L.Conv2D(8, 3, kernel_initializer="foo"), "kernel_initializer 'foo'"),
])
def test_bad_arguments_are_one_clear_line(make, message):
    with pytest.raises(CnnkitError) as e:
        make()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_kernel_larger_than_input():
    with pytest.raises(CnnkitError, match=r"kernel \(5, 5\) is larger than its padded input \(3, 3\)"):
        Sequential([L.Conv2D(4, 5)], input_shape=(3, 3, 1)).layer_infos()
    # 'same' pads, so the same kernel fits
    assert Sequential([L.Conv2D(4, 5, padding="same")], input_shape=(3, 3, 1)).output_shape == (3, 3, 4)


def test_conv_after_flatten_is_rejected():
    with pytest.raises(CnnkitError, match="needs an image input"):
        Sequential([L.Flatten(), L.Conv2D(4, 3)], input_shape=(8, 8, 1)).layer_infos()


def test_summary_of_built_in_layers_needs_no_torch():
    """Custom layers count parameters on a built module; the built-in ones keep their arithmetic,
    so `cnnkit summary` and model-file checks start as fast as the CLI does."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from cnnkit import layers as L\n"
            "from cnnkit.model.sequential import Sequential\n"
            "m = Sequential([L.Conv2D(4, 3, activation='relu'), L.BatchNormalization(), L.MaxPooling2D(),"
            " L.AveragePooling2D(1), L.ZeroPadding2D(1), L.Dropout(0.1), L.Activation('relu'),"
            " L.LeakyReLU(), L.GlobalAveragePooling2D(), L.Dense(3, activation='softmax')],"
            " input_shape=(8, 8, 1))\n"
            "m.summary(explain=True, print_fn=lambda *a: None)\n"
            "assert m.count_params() == 40 + 16 + 15, m.count_params()\n"
            "assert 'torch' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)
