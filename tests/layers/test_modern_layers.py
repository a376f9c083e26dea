"""The layers modern CNNs are made of (issue 27), against real Keras 3 on its torch backend:
the same weights (set through Keras's layout) give the same outputs to 1e-5, the same output
shapes and exact parameter counts; bad arguments are one line naming the value."""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import numpy as np
import pytest
import torch

from cnnkit import layers as L
from cnnkit.errors import CnnkitError
from cnnkit.layers.nn import activation_module
from cnnkit.model.saving import keras_weights, set_keras_weights



def _to_torch(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(x)
    return t.permute(0, 3, 1, 2) if t.dim() == 4 else t  # Keras NHWC -> cnnkit NCHW


def _to_keras(t: torch.Tensor) -> np.ndarray:
    t = t.detach()
    return (t.permute(0, 2, 3, 1) if t.dim() == 4 else t).numpy()


def _random(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _run_cnnkit(layer, shape, x, weights):
    """The cnnkit layer built for `shape`, given Keras's weights, run on `x` (NHWC)."""
    module = layer.build(shape, "keras").eval()
    if weights:
        set_keras_weights(module, weights, layer)
    with torch.no_grad():
        y = activation_module(layer.fused_activation())(module(_to_torch(x)))
    return module, _to_keras(y)


def _compare(keras, ours, theirs, shape, seed=0, scale=1.0):
    """cnnkit layer `ours` and Keras layer `theirs` on one random batch of `shape`."""
    x = _random((3, *shape), seed) * scale
    expected = keras.ops.convert_to_numpy(theirs(x))
    weights = [_random(w.shape, seed + 1 + i) for i, w in enumerate(theirs.get_weights())]
    if weights:
        theirs.set_weights(weights)
        expected = keras.ops.convert_to_numpy(theirs(x))
    module, got = _run_cnnkit(ours, shape, x, weights)
    assert ours.output_shape(shape) == tuple(expected.shape[1:])
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)
    assert sum(ours.params(shape)) == theirs.count_params()
    assert sum(p.numel() for p in module.parameters()) == theirs.count_params()
    # Keras's layout both ways: what goes in comes back out
    for mine, keras_array in zip(keras_weights(module), weights):
        np.testing.assert_array_equal(mine, keras_array)


CONV = [  # (shape, filters, kernel, keyword arguments, Keras's and cnnkit's alike)
    ((11, 11, 4), 6, 3, {"dilation_rate": 2, "padding": "same"}),
    ((12, 10, 3), 5, (3, 2), {"dilation_rate": (2, 3)}),
    ((9, 9, 4), 6, 4, {"dilation_rate": 3, "padding": "same"}),  # even kernel: pads 4 + 5
    ((10, 10, 4), 8, 3, {"groups": 2, "padding": "same"}),
    ((11, 9, 8), 4, 3, {"groups": 4, "strides": 2, "padding": "same", "use_bias": False}),
    ((8, 8, 6), 6, 1, {"groups": 3, "activation": "relu6"}),
]


@pytest.mark.parametrize("shape, filters, kernel, kwargs", CONV)
def test_conv2d_groups_and_dilation_match_keras(keras, shape, filters, kernel, kwargs):
    _compare(keras, L.Conv2D(filters, kernel, **kwargs),
             keras.layers.Conv2D(filters, kernel, **kwargs), shape)


DEPTHWISE = [
    ((9, 9, 3), 3, {"padding": "same"}),
    ((10, 10, 3), 3, {"depth_multiplier": 2, "strides": 2}),
    ((11, 11, 4), 3, {"dilation_rate": 2, "padding": "same"}),
    ((10, 9, 2), (3, 5), {"strides": (2, 1), "padding": "same", "use_bias": False,
                          "activation": "relu6"}),
    ((8, 8, 5), 2, {"depth_multiplier": 3, "padding": "same", "strides": 2}),
]


@pytest.mark.parametrize("shape, kernel, kwargs", DEPTHWISE)
def test_depthwise_conv2d_matches_keras(keras, shape, kernel, kwargs):
    _compare(keras, L.DepthwiseConv2D(kernel, **kwargs),
             keras.layers.DepthwiseConv2D(kernel, **kwargs), shape)


SEPARABLE = [
    ((9, 9, 3), 8, 3, {"padding": "same"}),
    ((10, 10, 3), 4, 3, {"depth_multiplier": 2, "strides": 2, "padding": "same"}),
    ((11, 11, 4), 6, 3, {"dilation_rate": 2}),
    ((8, 8, 2), 5, (3, 2), {"use_bias": False, "activation": "silu"}),
]


@pytest.mark.parametrize("shape, filters, kernel, kwargs", SEPARABLE)
def test_separable_conv2d_matches_keras(keras, shape, filters, kernel, kwargs):
    ours = L.SeparableConv2D(filters, kernel, **kwargs)
    theirs = keras.layers.SeparableConv2D(filters, kernel, **kwargs)
    _compare(keras, ours, theirs, shape)
    # Keras's three arrays: depthwise (kh, kw, in, multiplier), pointwise (1, 1, in · m, filters)
    module = ours.build(shape, "keras")
    kh, kw = ours.kernel_size
    m = ours.depth_multiplier
    assert [w.shape for w in keras_weights(module)] == [
        (kh, kw, shape[2], m), (1, 1, shape[2] * m, filters)] + ([(filters,)] if ours.use_bias else [])


@pytest.mark.parametrize("kwargs", [{}, {"max_value": 6.0}, {"negative_slope": 0.2},
                                    {"threshold": 0.5}, {"max_value": 1.5, "negative_slope": 0.1,
                                                         "threshold": 0.3}])
def test_relu_matches_keras(keras, kwargs):
    _compare(keras, L.ReLU(**kwargs), keras.layers.ReLU(**kwargs), (5, 5, 3), scale=4.0)


@pytest.mark.parametrize("name", ["relu6", "hard_sigmoid", "hard_silu", "silu"])
def test_activations_of_modern_cnns_match_keras(keras, name):
    # values to about ±12: past relu6's and hard_sigmoid's corners
    _compare(keras, L.Activation(name), keras.layers.Activation(name), (4, 4, 3), scale=4.0)


@pytest.mark.parametrize("keras_name, ours", [
    ("GlobalMaxPooling2D", L.GlobalMaxPooling2D), ("GlobalAveragePooling2D", L.GlobalAveragePooling2D)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_keepdims_matches_keras(keras, keras_name, ours, keepdims):
    _compare(keras, ours(keepdims=keepdims), getattr(keras.layers, keras_name)(keepdims=keepdims),
             (5, 7, 4))


@pytest.mark.parametrize("shape, target", [((4, 4, 6), (-1,)), ((4, 4, 6), (2, 8, 6)),
                                           ((4, 4, 6), (8, 12)), ((6,), (1, 1, 6)),
                                           ((4, 4, 6), (1, 1, -1)), ((2, 3, 4), (4, 3, 2))])
def test_reshape_matches_keras(keras, shape, target):
    _compare(keras, L.Reshape(target), keras.layers.Reshape(target), shape)


MERGES = [  # (Keras class, cnnkit class, input shapes, arguments)
    ("Add", L.Add, [(5, 5, 4), (5, 5, 4)], {}),
    ("Add", L.Add, [(6,), (6,), (6,)], {}),
    ("Multiply", L.Multiply, [(1, 1, 4), (5, 6, 4)], {}),  # squeeze-excitation's broadcast
    ("Multiply", L.Multiply, [(5, 6, 4), (1, 1, 4)], {}),
    ("Subtract", L.Subtract, [(5, 5, 4), (5, 5, 4)], {}),
    ("Average", L.Average, [(5, 5, 4), (5, 5, 4), (5, 5, 4)], {}),
    ("Maximum", L.Maximum, [(7,), (7,)], {}),
    ("Minimum", L.Minimum, [(3, 3, 2), (3, 3, 2)], {}),
    ("Concatenate", L.Concatenate, [(5, 5, 4), (5, 5, 3)], {}),
    ("Concatenate", L.Concatenate, [(2, 5, 4), (3, 5, 4)], {"axis": 1}),
    ("Concatenate", L.Concatenate, [(5, 2, 4), (5, 1, 4), (5, 3, 4)], {"axis": -2}),
    ("Concatenate", L.Concatenate, [(4,), (6,)], {"axis": 1}),
]


@pytest.mark.parametrize("keras_name, ours, shapes, kwargs", MERGES)
def test_merge_layers_match_keras(keras, keras_name, ours, shapes, kwargs):
    layer = ours(**kwargs)
    assert layer.merges
    xs = [_random((3, *s), seed=i) for i, s in enumerate(shapes)]
    expected = keras.ops.convert_to_numpy(getattr(keras.layers, keras_name)(**kwargs)(xs))
    module = layer.build(list(shapes), "keras")
    got = _to_keras(module(*[_to_torch(x) for x in xs]))
    assert layer.output_shape(list(shapes)) == tuple(expected.shape[1:])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert layer.params(list(shapes)) == (0, 0)
    assert layer.explain(list(shapes), layer.output_shape(list(shapes)))


@pytest.mark.parametrize("layer, shapes, message", [
    (L.Add(), [(5, 5, 4), (5, 5, 3)], r"Add: inputs of shapes \(5, 5, 4\), \(5, 5, 3\) do not match"),
    (L.Multiply(), [(4,), (5, 5, 4)],
     r"Multiply: inputs of shapes \(4\), \(5, 5, 4\) do not match; valid: shapes of one rank"),
    (L.Subtract(), [(4,), (4,), (4,)], r"Subtract: takes exactly 2 inputs; received 3"),
    (L.Concatenate(), [(5, 5, 4), (4, 5, 4)],
     r"Concatenate: inputs of shapes \(5, 5, 4\), \(4, 5, 4\) cannot be joined on axis -1"),
    (L.Concatenate(axis=4), [(5, 5, 4), (5, 5, 4)], r"axis=4 is out of range"),
])
def test_merge_shape_mismatches_are_one_line(layer, shapes, message):
    with pytest.raises(CnnkitError, match=message) as e:
        layer.output_shape(shapes)
    assert "\n" not in str(e.value)


def test_dropout_noise_shape_and_spatial_dropout_drop_what_keras_drops(keras):
    """Random masks differ between engines; what is dropped together must not: a whole image
    for noise_shape (None, 1, 1, 1), a whole channel for SpatialDropout2D, kept values / 0.5."""
    x = np.abs(_random((64, 4, 4, 8))) + 1.0
    cases = [(L.Dropout(0.5, noise_shape=[None, 1, 1, 1]),
              keras.layers.Dropout(0.5, noise_shape=(None, 1, 1, 1)), (1, 2, 3)),
             (L.SpatialDropout2D(0.5), keras.layers.SpatialDropout2D(0.5), (1, 2))]
    for ours, theirs, together in cases:
        module = ours.build((4, 4, 8), "keras").train()
        torch.manual_seed(0)
        for y in (_to_keras(module(_to_torch(x))),
                  keras.ops.convert_to_numpy(theirs(x, training=True))):
            kept = y != 0
            assert (kept.all(axis=together) | ~kept.any(axis=together)).all()
            np.testing.assert_allclose(y[kept], x[kept] * 2, rtol=1e-6)
            assert 0.2 < kept.mean() < 0.8
        np.testing.assert_array_equal(_to_keras(module.eval()(_to_torch(x))), x)  # inference


@pytest.mark.parametrize("make, message", [
    (lambda: L.Conv2D(8, 3, groups=3), r"Conv2D: filters=8 must be a multiple of groups=3"),
    (lambda: L.Conv2D(8, 3, groups=0), r"groups must be a positive integer; received groups=0"),
    (lambda: L.Conv2D(8, 3, dilation_rate=2, strides=2),
     r"strides > 1 cannot be combined with dilation_rate > 1"),
    (lambda: L.Conv2D(8, 3, dilation_rate=0), r"dilation_rate must be a positive integer .*=0"),
    (lambda: L.DepthwiseConv2D(3, depth_multiplier=0),
     r"DepthwiseConv2D: depth_multiplier must be a positive integer; received depth_multiplier=0"),
    (lambda: L.DepthwiseConv2D(3, padding="full"), r"unknown padding 'full'"),
    (lambda: L.SeparableConv2D(-3, 3), r"SeparableConv2D: filters must be a positive integer; "
                                       r"received filters=-3"),
    (lambda: L.SeparableConv2D(4, 3, activation="swish"), r"unknown activation 'swish'"),
    (lambda: L.ReLU(max_value=-1), r"ReLU: max_value must be None or a number >= 0; received "
                                   r"max_value=-1"),
    (lambda: L.ReLU(threshold=float("nan")), r"threshold must be a number >= 0"),
    (lambda: L.ReLU(negative_slope="0.1"), r"negative_slope must be a number >= 0"),
    (lambda: L.Reshape((2, -1, -1)), r"Reshape: target_shape must be .* received "
                                     r"target_shape=\(2, -1, -1\)"),
    (lambda: L.Reshape((0, 4)), r"target_shape=\(0, 4\)"),
    (lambda: L.SpatialDropout2D(1.0), r"rate must be a number in \[0, 1\); received rate=1.0"),
    (lambda: L.Dropout(0.2, noise_shape=[None, 0]), r"noise_shape must be .* received"),
    (lambda: L.GlobalMaxPooling2D(keepdims="yes"), r"keepdims must be true or false"),
    (lambda: L.Concatenate(axis=0), r"Concatenate: axis must be a non-zero integer"),
])
def test_bad_arguments_are_one_line_naming_the_value(make, message):
    with pytest.raises(CnnkitError, match=message) as e:
        make()
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("layer, shape, message", [
    (L.Conv2D(8, 3, groups=2), (8, 8, 3), r"input channels 3 .* must be a multiple of groups=2"),
    (L.Reshape((5, -1)), (4, 4, 6), r"cannot reshape \(4, 4, 6\) \(96 values\) to \(5, -1\)"),
    (L.Reshape((4, 4, 4)), (4, 4, 6), r"cannot reshape \(4, 4, 6\)"),
    (L.Dropout(0.1, noise_shape=[None, 1]), (4, 4, 6), r"noise_shape \(None, 1\) does not fit"),
    (L.DepthwiseConv2D(3, dilation_rate=3), (6, 6, 2), r"kernel \(7, 7\) is larger than"),
    (L.SpatialDropout2D(0.1), (6,), r"needs an image input"),
])
def test_shapes_that_do_not_fit_are_one_line(layer, shape, message):
    with pytest.raises(CnnkitError, match=message) as e:
        layer.output_shape(shape)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("layer", [
    L.Conv2D(8, 3, dilation_rate=2, groups=2), L.DepthwiseConv2D(3, 2, "same", 2),
    L.SeparableConv2D(8, 3, dilation_rate=2, depth_multiplier=2, activation="relu6"),
    L.ReLU(6.0), L.ReLU(negative_slope=0.1, threshold=1.0), L.SpatialDropout2D(0.25),
    L.Dropout(0.2, noise_shape=[None, 1, 1, 1]), L.GlobalMaxPooling2D(True),
    L.GlobalAveragePooling2D(keepdims=True), L.Reshape((1, 1, -1)), L.Add(), L.Concatenate(1),
    L.Subtract(name="diff")])
def test_configs_rebuild_the_layer_and_model_files_name_it(layer):
    entry = L.layer_to_config(layer)
    again = L.layer_from_config(entry)
    assert type(again) is type(layer) and again.get_config() == layer.get_config()
    assert again.name == layer.name


@pytest.mark.parametrize("initializer", ["glorot_uniform", "he_normal"])
def test_depthwise_kernels_start_as_keras_draws_them(keras, initializer):
    """Keras counts a (kh, kw, in, multiplier) kernel's fans as in·kh·kw and multiplier·kh·kw,
    not as torch's grouped conv (1·kh·kw, in·multiplier·kh·kw): the spread must be Keras's."""
    theirs = keras.layers.DepthwiseConv2D(3, depth_multiplier=4, depthwise_initializer=initializer)
    theirs.build((None, 8, 8, 64))
    ours = L.DepthwiseConv2D(3, depth_multiplier=4, depthwise_initializer=initializer)
    torch.manual_seed(0)
    mine = keras_weights(ours.build((8, 8, 64), "keras"))
    expected = keras.ops.convert_to_numpy(theirs.kernel)
    assert mine[0].shape == expected.shape == (3, 3, 64, 4)
    np.testing.assert_allclose(mine[0].std(), expected.std(), rtol=0.1)
    np.testing.assert_array_equal(mine[1], 0)  # Keras's zero biases


def test_a_merge_layer_in_a_sequential_says_where_it_belongs():
    import cnnkit

    with pytest.raises(CnnkitError, match=r"Add: merges several inputs, so it belongs in a graph "
                                          r"model, not a Sequential") as e:
        cnnkit.Sequential([L.Input((8, 8, 3)), L.Conv2D(4, 3), L.Add()]).summary()
    assert "\n" not in str(e.value)
