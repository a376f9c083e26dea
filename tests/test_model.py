"""Sequential: Python definition, output checks, predict shapes, L2 penalty."""
import numpy as np
import pytest
import torch

from cnnkit import Sequential, layers as L
from cnnkit.errors import CnnkitError


def first_model():
    return Sequential([L.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
                       L.Flatten(), L.Dense(10, activation="softmax")])


def test_issue_example_builds_and_prints_keras_summary(capsys):
    model = first_model()
    model.summary()
    out = capsys.readouterr().out
    assert "conv2d (Conv2D)" in out and "(None, 26, 26, 32)" in out
    assert "(None, 5408)" in out and "Total params: 54,410" in out
    assert "Non-trainable params: 0" in out


def test_summary_explain_shows_filled_in_formulas(capsys):
    first_model().summary(explain=True)
    out = capsys.readouterr().out
    assert "floor((28 - 3 + 2·0) / 1) + 1 = 26" in out
    assert "32 × (1 × 3 × 3 + 1) = 320" in out
    assert "10 × (5,408 + 1) = 54,090" in out


def test_summary_explain_same_with_asymmetric_padding():
    model = Sequential([L.Conv2D(2, 4, strides=2, padding="same")], input_shape=(7, 7, 1))
    text = " ".join(model.summary_dict()["layers"][0]["explain"])
    assert "floor((7 - 4 + 1 + 2) / 2) + 1 = 4" in text


def test_final_softmax_split_off_as_output_activation():
    model = first_model()
    assert model.output_activation == "softmax"
    x = torch.rand(2, 1, 28, 28)
    logits = model.net(x)
    assert not torch.allclose(logits.sum(1), torch.ones(2))  # logits, not probabilities
    probs = model.predict(np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32))
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)


def test_predict_accepts_one_image_without_batch_axis():
    model = first_model()
    img = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    assert model.predict(img).shape == (10,)
    assert model.predict(img[..., None]).shape == (10,)
    assert model.predict(img[None, ..., None]).shape == (1, 10)
    np.testing.assert_allclose(model.predict(img), model.predict(img[None, ..., None])[0], rtol=1e-6)


def test_predict_converts_another_size_and_colour_and_refuses_what_is_no_image():
    # the input contract resizes and converts (RGB -> gray) to the model's input
    assert first_model().predict(np.zeros((32, 32, 3), np.uint8)).shape == (10,)
    with pytest.raises(CnnkitError, match=r"\(1, 2, 28, 28, 1\)"):
        first_model().predict(np.zeros((1, 2, 28, 28, 1), np.uint8))


def test_non_vector_output_names_the_fix():
    model = Sequential([L.Conv2D(4, 3), L.Dense(10, activation="softmax")], input_shape=(8, 8, 1))
    with pytest.raises(CnnkitError, match="Flatten or GlobalAveragePooling2D"):
        model.check_classifier()


def test_missing_input_shape_is_clear():
    with pytest.raises(CnnkitError, match=r"Input\(\(H, W, C\)\)"):
        Sequential([L.Dense(3)]).summary()


def test_l2_penalty_matches_keras_definition():
    model = Sequential([L.Flatten(), L.Dense(3, kernel_regularizer={"l2": 0.1})], input_shape=(2, 2, 1))
    (kernel, _), = model.get_weights()
    assert float(model.l2_penalty().detach()) == pytest.approx(0.1 * (kernel ** 2).sum(), rel=1e-5)
    assert float(Sequential([L.Flatten(), L.Dense(3)], input_shape=(2, 2, 1)).l2_penalty()) == 0


def test_keras_init_glorot_and_zero_bias():
    torch.manual_seed(0)
    model = Sequential([L.Flatten(), L.Dense(200)], input_shape=(10, 10, 3))
    (kernel, bias), = model.get_weights()
    limit = (6 / (300 + 200)) ** 0.5
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.95 * limit
    assert (bias == 0).all()


def test_config_round_trip():
    model = first_model()
    again = Sequential.from_config(model.get_config())
    assert again.get_config() == model.get_config()
    assert again.count_params() == 54_410


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", "tanh", "sigmoid"])
def test_activation_moved_after_max_pooling_changes_nothing(activation):
    """The engine pools before a non-decreasing activation (cheaper); outputs and gradients are
    those of the layers in the order the user wrote them."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = Sequential([L.Conv2D(4, 3, activation=activation, padding="same"), L.MaxPooling2D(2),
                        L.Flatten(), L.Dense(3)], input_shape=(7, 7, 2))
    net = model.net
    from cnnkit.layers.nn import MaxPool2d

    assert isinstance(net.steps[1], MaxPool2d)  # conv, pool, then the activation
    conv, dense = model.layer_module("conv2d").conv, model.layer_module("dense").linear
    assert set(net.state_dict()) == {"layers.conv2d.conv.weight", "layers.conv2d.conv.bias",
                                     "layers.dense.linear.weight", "layers.dense.linear.bias"}
    act = {"relu": F.relu, "leaky_relu": lambda t: F.leaky_relu(t, 0.01), "elu": F.elu,
           "tanh": torch.tanh, "sigmoid": torch.sigmoid}[activation]
    x = torch.randn(5, 2, 7, 7)
    pooled = F.max_pool2d(act(conv(x)), 2)  # the order the user wrote: activation, then pool
    expected = dense(pooled.permute(0, 2, 3, 1).reshape(5, -1))
    got = net(x)
    assert torch.allclose(got, expected, atol=1e-6)
    g_got = torch.autograd.grad(got.sum(), conv.weight)[0]
    g_expected = torch.autograd.grad(expected.sum(), conv.weight)[0]
    assert torch.allclose(g_got, g_expected, atol=1e-5)


def test_test_time_flip_averages_mirror_logits_in_eval_only():
    import torch

    from cnnkit.model.presets import create_model

    torch.manual_seed(0)
    model = create_model("fast-cnn")
    x = torch.rand(5, 1, 28, 28)
    net = model.net.eval()
    plain, mirror = net(x), net(x.flip(3))
    model.test_time_flip = True
    assert torch.allclose(net(x), (plain + mirror) / 2, atol=1e-6)
    net.train()
    assert net(x).shape == (5, 10)  # training sees each image once, as given
    again = Sequential.from_config(model.get_config())
    assert again.test_time_flip and again.get_config()["test_time_flip"] is True
    assert "test_time_flip" not in create_model("fast-cnn").get_config()


def test_test_time_flip_needs_a_classifier_and_a_bool():
    m = Sequential([L.Conv2D(4, 3)], input_shape=(8, 8, 1))
    with pytest.raises(CnnkitError, match="not one vector per image"):
        m.test_time_flip = True
    classifier = Sequential([L.Flatten(), L.Dense(2)], input_shape=(4, 4, 1))
    with pytest.raises(CnnkitError, match="test_time_flip must be true or false; got 'yes'"):
        classifier.test_time_flip = "yes"


def test_summary_rows_stay_aligned_with_long_layer_names():
    from cnnkit.model.presets import create_model
    from cnnkit.model.summary import format_summary

    table = [line for line in format_summary(create_model("fast-cnn")).splitlines()
             if line[:1] in "┏┃┡│└"]
    assert any("batch_normalization_2 (BatchNormalization)" in line for line in table)
    assert len({len(line) for line in table}) == 1  # every border in the same column


# -- layers own their weights by name ------------------------------------------------------------
def test_weights_are_keyed_by_layer_name_in_layer_order():
    model = Sequential([L.Conv2D(4, 3, activation="relu", name="stem"), L.MaxPooling2D(),
                        L.BatchNormalization(), L.Flatten(), L.Dense(3, name="head")],
                       input_shape=(8, 8, 1))
    assert model.layer_names() == ["stem", "max_pooling2d", "batch_normalization", "flatten", "head"]
    keys = list(model.net.state_dict())
    assert keys[:2] == ["layers.stem.conv.weight", "layers.stem.conv.bias"]
    assert "layers.batch_normalization.running_mean" in keys and keys[-1] == "layers.head.linear.bias"
    # the optimizer sees the parameters in layer order, whatever order the modules run in
    order = [id(p) for name in ("stem", "batch_normalization", "head")
             for p in model.layer_module(name).parameters()]
    assert [id(p) for p in model.net.parameters()] == order
    assert model.get_layer("head") is model.layers[-1]
    with pytest.raises(CnnkitError, match="unknown layer name 'dense'; valid: stem, max_pooling2d"):
        model.get_layer("dense")


def test_set_layer_weights_by_name_or_index():
    model = Sequential([L.Conv2D(1, 2, name="c")], input_shape=(3, 3, 1))
    kernel = np.array([[1, 0], [1, 0]], np.float32).reshape(2, 2, 1, 1)
    model.set_layer_weights("c", [kernel, np.array([5.0], np.float32)])
    (k, b), = model.get_weights()
    np.testing.assert_array_equal(k, kernel)
    model.set_layer_weights(0, [kernel, np.array([1.0], np.float32)])
    assert model.get_weights()[0][1].tolist() == [1.0]
    with pytest.raises(CnnkitError, match="layer index 3 is out of range; valid: 0 to 0"):
        model.set_layer_weights(3, [kernel])


@pytest.mark.parametrize("make, message", [
    (lambda: [L.Dense(3, name="head"), L.Dense(3, name="head")],
     r"layers\[1\]: the layer name 'head' is already layers\[0\]'s"),
    (lambda: [L.Dense(3, name="dense_1"), L.Dense(3)],  # Keras's automatic name for the second
     r"layers\[1\]: the layer name 'dense_1' is already layers\[0\]'s"),
    (lambda: [L.Dense(3, name="block.1")], r"layer name 'block.1' cannot name a layer's weights"),
    (lambda: [L.Dense(3, name="")], r"layer name '' cannot name a layer's weights"),
])
def test_bad_layer_names_are_one_clear_line(make, message):
    with pytest.raises(CnnkitError, match=message):
        Sequential(make())


def test_a_duplicate_name_in_a_model_file_is_named(tmp_path):
    cfg = {"input_shape": [4, 4, 1], "layers": [{"Flatten": {"name": "x"}}, {"Dense": {"units": 2, "name": "x"}}]}
    with pytest.raises(CnnkitError, match=r"layers\[1\]: the layer name 'x' is already layers\[0\]'s"):
        Sequential.from_config(cfg)


def test_a_name_torch_keeps_for_itself_is_refused_at_build():
    model = Sequential([L.Flatten(), L.Dense(2, name="eval")], input_shape=(4, 4, 1))
    with pytest.raises(CnnkitError, match="the layer name 'eval' is taken by PyTorch"):
        model.build()
