"""Graph models (cnnkit.model.graph): tracing, shapes, the built network, descriptions, nested
models and the errors a user meets. The merge layer here is a user's own (a registered Layer
with `merges = True`), so these tests hold whatever merge layers cnnkit ships."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import cnnkit
from cnnkit import layers as L
from cnnkit.errors import CnnkitError
from cnnkit.model.graph import Functional, model_from_config


@L.register_layer
class Plus(L.Layer):
    """x + y + ...: a merge layer of the user's own."""

    merges = True

    def output_shape(self, shapes):
        if len(set(map(tuple, shapes))) != 1:
            raise self._error(f"inputs of different shapes {shapes}")
        return tuple(shapes[0])

    def params(self, shapes):
        return 0, 0

    def build(self, shapes, init):
        class Sum(torch.nn.Module):
            def forward(self, *xs):
                return torch.stack(xs).sum(0)

        return Sum()


def residual(seed=0):
    torch.manual_seed(seed)
    inputs = L.Input((8, 8, 1), name="image")
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="stem")(inputs)
    y = L.Conv2D(4, 3, padding="same", activation="relu")(x)  # conv2d_1: the stem counts
    y = L.BatchNormalization()(y)
    x = Plus(name="skip")([x, y])
    outputs = L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(x))
    return Functional(inputs, outputs, name="tiny_resnet")


def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images[..., None] * 16).clip(0, 255).astype("uint8"), d.target


def test_a_graph_lists_its_layers_with_their_inputs_and_keras_shapes():
    model = residual()
    rows = model.summary_dict()["layers"]
    assert [r["name"] for r in rows] == ["image", "stem", "conv2d_1", "batch_normalization", "skip",
                                        "global_average_pooling2d", "dense"]
    assert [r["connected_to"] for r in rows] == [[], ["image"], ["stem"], ["conv2d_1"],
                                                 ["stem", "batch_normalization"], ["skip"],
                                                 ["global_average_pooling2d"]]
    assert rows[4]["input_shape"] == [[8, 8, 4], [8, 8, 4]] and rows[4]["output_shape"] == [8, 8, 4]
    assert model.count_params() == 40 + 148 + 16 + 50
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Connected to" in text and "stem[0][0]" in text
    skip = next(i for i, line in enumerate(lines) if line.startswith("│ skip (Plus)"))
    assert "batch_normalization[0][0]" in lines[skip + 1]  # a merge's second input, next line


def test_the_network_computes_the_graph():
    model = residual()
    x = np.random.default_rng(0).random((2, 8, 8, 1)).astype("float32")
    net = model.net.eval()
    t = torch.from_numpy(x).permute(0, 3, 1, 2)
    with torch.no_grad():
        m = net.layers
        stem = torch.relu(m["stem"](t))
        skip = stem + m["batch_normalization"](torch.relu(m["conv2d_1"](stem)))
        expected = torch.softmax(m["dense"](skip.mean((2, 3))), 1)
    np.testing.assert_allclose(model(x), expected.numpy(), atol=1e-6)
    assert model.output_activation == "softmax"  # split off: the net gives logits


def test_a_graph_trains_on_the_one_engine_and_saves_and_loads(tmp_path):
    x, y = digits()
    model = residual()
    model.compile(optimizer="adam")
    history = model.fit(x[:1200], y[:1200], epochs=3, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    model.save(tmp_path / "m")
    again = cnnkit.load(tmp_path / "m")
    assert isinstance(again, Functional)
    np.testing.assert_allclose(again.predict(x[1200:1210]), model.predict(x[1200:1210]), atol=1e-6)


def test_its_description_round_trips_through_a_model_file(tmp_path):
    model = residual()
    cfg = model.get_config()
    assert cfg["outputs"] == ["dense"]
    skip = next(e["Plus"] for e in cfg["layers"] if "Plus" in e)
    assert skip["inputs"] == ["stem", "batch_normalization"]
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(cfg))
    again = cnnkit.load_model_file(path)
    again.net.load_state_dict(model.net.state_dict())
    x = np.random.default_rng(1).random((3, 8, 8, 1)).astype("float32")
    np.testing.assert_array_equal(again(x), model(x))


def test_a_hand_written_graph_file_where_inputs_default_to_the_previous_layer():
    cfg = {"name": "two_paths", "layers": [
        {"InputLayer": {"shape": [8, 8, 1], "name": "img"}},
        {"Conv2D": {"filters": 2, "kernel_size": 3, "padding": "same", "name": "a"}},
        {"Conv2D": {"filters": 2, "kernel_size": 1, "name": "b", "inputs": "img"}},
        {"Plus": {"inputs": ["a", "b"]}},
        {"Flatten": {}}, {"Dense": {"units": 3}}]}
    model = model_from_config(cfg)
    assert model.inbound == [[], [0], [0], [1, 2], [3], [4]]
    assert model.output_shape == (3,)


@pytest.mark.parametrize("change, message", [
    ({"inputs": ["nope"]}, r"layers\[2\]: inputs names 'nope', which is not a layer listed before it"),
    ({"inputs": ["flatten"]}, r"inputs names 'flatten', which is not a layer listed before"),
    ({"inputs": 3}, r"inputs must be a layer name or a list of them; received 3"),
])
def test_a_bad_graph_file_is_one_line(change, message):
    cfg = {"layers": [{"InputLayer": {"shape": [8, 8, 1]}}, {"Conv2D": {"filters": 2, "kernel_size": 3}},
                      {"Conv2D": {"filters": 2, "kernel_size": 1, **change}}, {"Flatten": {}}]}
    with pytest.raises(CnnkitError, match=message):
        model_from_config(cfg, "tiny.yaml")


def test_shapes_that_do_not_merge_fail_at_the_call():
    inputs = L.Input((8, 8, 1))
    a = L.Conv2D(2, 3)(inputs)
    b = L.Conv2D(2, 1)(inputs)
    with pytest.raises(CnnkitError, match=r"Plus: inputs of different shapes"):
        Plus()([a, b])


@pytest.mark.parametrize("build, message", [
    (lambda i: (i, L.Dense(2)(L.Flatten()(L.Input((4, 4, 1))))), r"not in inputs"),
    (lambda i: ([i, L.Input((3,))], L.Dense(2)(L.Flatten()(i))), r"does not reach the output"),
    (lambda i: (i, Plus()(L.Flatten()(i))), r"call it on a list of two or more"),
    (lambda i: (i, L.Dense(2)([L.Flatten()(i), L.Flatten()(i)])), r"takes one tensor"),
    (lambda i: (i, L.Dense(2)(np.zeros((1, 4)))), r"was called on ndarray"),
])
def test_a_graph_that_cannot_be_built_says_why(build, message):
    with pytest.raises(CnnkitError, match=message):
        Functional(*build(L.Input((4, 4, 1))))


def test_a_layer_called_twice_is_refused_rather_than_sharing_weights():
    inputs = L.Input((4, 4, 1))
    dense = L.Dense(2)
    dense(inputs)
    with pytest.raises(CnnkitError, match=r"already called on a tensor.*create a second layer"):
        dense(inputs)


def test_several_inputs_build_but_are_not_trained_as_images():
    a, b = L.Input((4, 4, 1)), L.Input((4, 4, 1))
    out = L.Dense(2)(L.Flatten()(Plus()([a, b])))
    model = Functional([a, b], out)
    assert model.input_shapes == [(4, 4, 1), (4, 4, 1)]
    x = torch.ones(1, 1, 4, 4)
    assert model.net(x, 2 * x).shape == (1, 2)
    with pytest.raises(CnnkitError, match=r"takes 2 inputs.*one image input"):
        model.check_classifier()


def test_a_model_nested_in_a_model_shares_its_weights():
    base = cnnkit.Sequential([L.Flatten(), L.Dense(3)], input_shape=(4, 4, 1))
    outer = cnnkit.Sequential([base, L.Activation("softmax")])
    assert outer.input_shape == (4, 4, 1) and outer.count_params() == base.count_params()
    x = np.random.default_rng(0).random((2, 4, 4, 1)).astype("float32")
    logits = base(x)
    e = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(outer(x), e / e.sum(1, keepdims=True), atol=1e-6)
    with torch.no_grad():  # trained together: the outer model holds the base's own weights
        base.net.layers["dense"].linear.bias += 1.0
    moved = base(x)
    assert not np.allclose(moved, logits)
    np.testing.assert_allclose(outer(x), np.exp(moved) / np.exp(moved).sum(1, keepdims=True),
                               atol=1e-6)
    inputs = L.Input((4, 4, 1))
    graph = Functional(inputs, L.Activation("softmax")(base(inputs)))
    assert [r["type"] for r in graph.summary_dict()["layers"]] == ["InputLayer", "Sequential",
                                                                   "Activation"]
    np.testing.assert_allclose(graph(x), outer(x), atol=1e-6)
    again = model_from_config(json.loads(json.dumps(graph.get_config())))
    assert again.count_params() == graph.count_params()


def test_a_functional_model_cannot_grow_by_add():
    with pytest.raises(CnnkitError, match=r"graph model's layers come from its inputs"):
        residual().add(L.Dense(2))


def test_batch_norm_then_relu_in_a_graph_runs_as_one_kernel_step_with_the_same_values():
    from cnnkit.kernels.fuse import BNReLU, layers_on_kernels

    torch.manual_seed(0)
    inputs = L.Input((8, 8, 3))
    x = L.Activation("relu")(L.BatchNormalization()(L.Conv2D(4, 3, padding="same")(inputs)))
    y = L.BatchNormalization()(L.Conv2D(4, 3, padding="same")(x))  # read by two layers: kept
    z = Plus()([L.Activation("relu")(y), y])
    model = Functional(inputs, L.Dense(2)(L.Flatten()(z)))
    net = model.net
    assert [type(step[1]).__name__ for step in net.planned].count("BNReLU") == 1
    assert layers_on_kernels(net) == {"bn_relu": ["batch_normalization + activation"]}
    assert isinstance(next(s[1] for s in net.planned if s[0] == 3), BNReLU)
    t = torch.rand(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    net.eval()  # in eval mode both paths are torch's own ops: equal to the last bit
    np.testing.assert_array_equal(net(t).detach().numpy(),
                                  net.trace((t,), set())[1].detach().numpy())
    with torch.no_grad():  # no gradients: the first batch norm folds into its convolution
        np.testing.assert_allclose(net(t).numpy(), net.trace((t,), set())[1].numpy(),
                                   rtol=1e-5, atol=1e-6)
    net.train()  # training: the kernel where it is built, the same values and gradients
    grads = []
    for run in (lambda: net(t), lambda: net.trace((t,), set())[1]):
        net.zero_grad()
        out = run()
        out.square().sum().backward()
        grads.append([out.detach()] + [p.grad.clone() for p in net.parameters()])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


def test_a_frozen_convolution_runs_with_its_batch_norm_folded_in_and_the_same_values():
    """A frozen backbone (no parameter requiring grad, batch norms on their moving statistics),
    or any network in eval mode without gradients (predict, evaluate), skips each batch norm
    that alone reads a convolution: it is folded into the convolution's weights. Whenever
    either trains, both run as they are."""
    torch.manual_seed(0)
    inputs = L.Input((9, 9, 3))
    x = L.BatchNormalization()(L.Conv2D(4, 3, strides=2, padding="same")(inputs))  # asymmetric pad
    x = L.Activation("relu")(L.BatchNormalization()(L.Conv2D(4, 3, padding="same", use_bias=False)(x)))
    x = L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x))
    model = Functional(inputs, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    net = model.net
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # statistics and affine weights far from 0 and 1
        for bn in norms:
            bn.running_mean.normal_(0, 0.5, generator=g)
            bn.running_var.uniform_(0.2, 2.0, generator=g)
            bn.weight.uniform_(0.5, 1.5, generator=g)
            bn.bias.normal_(0, 0.3, generator=g)
    calls = []
    for bn in norms:
        bn.register_forward_hook(lambda *_: calls.append(1))
    t = torch.rand(2, 3, 9, 9)
    net.eval()
    trained = net(t).detach()  # parameters requiring grad, gradients on: the batch norms run
    assert len(calls) == 3
    with torch.no_grad():
        want = net.trace((t,), set())[1]  # layer by layer, always unfolded
        calls.clear()
        inferred = net(t)  # no gradients to compute (predict): folded
    assert calls == []
    net.requires_grad_(False)
    folded = net(t)  # frozen, gradients on (a frozen backbone in training): folded
    assert calls == []  # folded: not one batch norm ran
    np.testing.assert_array_equal(trained.numpy(), want.numpy())
    np.testing.assert_allclose(folded.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(inferred.numpy(), folded.numpy())
    net.train()  # training mode: batch statistics, so the batch norms run again
    net(t)
    assert len(calls) == 3


def test_a_model_that_rescales_its_own_pixels_is_fed_raw_pixels_in_training_and_after():
    """Keras's tutorials put Rescaling(1./255) first; cnnkit's own runs feed pixels / 255 by
    default, so such a model would see them divided twice (values near 0) without this."""
    x, y = digits()
    torch.manual_seed(0)
    inputs = L.Input((8, 8, 1))
    scaled = L.Rescaling(1 / 255)(L.RandomContrast(0.1)(inputs))  # augmentation keeps scale
    hidden = L.Dense(64, activation="relu")(L.Flatten()(scaled))
    model = Functional(inputs, L.Dense(10, activation="softmax")(hidden))
    model.compile(optimizer="adam", lr=0.01)
    model.fit(x[:1200], y[:1200], epochs=6, batch_size=32, verbose=0)
    assert model.preprocessing == {"normalize": "standardize", "mean": [0.0],
                                   "std": [pytest.approx(1 / 255)]}
    net = model.net.eval()
    raw = torch.from_numpy(x[1200:1205]).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        expected = net.outputs(net(raw)).numpy()
    np.testing.assert_allclose(model.predict(x[1200:1205]), expected, atol=1e-6)
    assert model.evaluate(x[1200:], y[1200:])["accuracy"] > 0.8
