"""A layer of the user's own, registered as Keras's `register_keras_serializable` does, goes
everywhere a built-in layer goes: model files, summary, training, saving, loading, L2, freezing."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import cnnkit
from cnnkit import layers as L
from cnnkit.errors import CnnkitError
from cnnkit.layers import Layer, register_layer
from cnnkit.model.files import load_model_file
from cnnkit.train.transfer import freeze_layers


class PointwiseModule(nn.Module):
    def __init__(self, channels: int, filters: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(filters, channels) / channels ** 0.5)
        self.bias = nn.Parameter(torch.zeros(filters))

    def forward(self, x):  # (B, C, H, W) -> (B, F, H, W)
        return torch.einsum("bchw,fc->bfhw", x, self.weight) + self.bias[:, None, None]


@register_layer
class Pointwise(Layer):
    """A 1x1 convolution written by hand: `filters` weighted sums of each pixel's channels."""

    def __init__(self, filters, kernel_regularizer=0.0, name=None):
        super().__init__(name)
        if isinstance(filters, bool) or not isinstance(filters, int) or filters <= 0:
            raise self._error(f"filters must be a positive integer; received filters={filters!r}")
        self.filters, self.kernel_regularizer = filters, float(kernel_regularizer)

    def get_config(self):
        return {"filters": self.filters, "kernel_regularizer": self.kernel_regularizer}

    def output_shape(self, shape):
        return shape[:-1] + (self.filters,)

    def build(self, shape, init):
        return PointwiseModule(shape[-1], self.filters)

    def l2(self):
        return self.kernel_regularizer


MODEL_YAML = """\
name: pointwise-digits
input_shape: [8, 8, 1]
layers:
  - Conv2D: {filters: 6, kernel_size: 3, activation: relu}
  - Pointwise: {filters: 4, kernel_regularizer: 0.01}
  - Flatten: {}
  - Dense: {units: 10, activation: softmax}
"""


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "pointwise.yaml"
    path.write_text(MODEL_YAML)
    return path


def digits(n=256):
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images[:n] * 16).clip(0, 255).astype(np.uint8)[..., None], d.target[:n]


def test_model_file_names_the_layer_and_summary_counts_its_parameters(model_file, capsys):
    model = load_model_file(model_file)
    assert model.layer_names() == ["conv2d", "pointwise", "flatten", "dense"]  # Keras's snake_case
    model.summary()
    row = next(line for line in capsys.readouterr().out.splitlines() if "pointwise (Pointwise)" in line)
    assert "(None, 6, 6, 4)" in row and " 28 " in row  # 6 channels × 4 filters + 4 biases
    assert model.count_params() == sum(p.numel() for p in model.net.parameters())
    assert L.layer_to_config(model.layers[1]) == {"Pointwise": {"filters": 4, "kernel_regularizer": 0.01}}


def test_default_count_splits_trainable_and_buffers_as_keras_does():
    @register_layer
    class PlainBatchNorm(Layer):
        def build(self, shape, init):
            return nn.BatchNorm2d(shape[-1])

    assert PlainBatchNorm().params((5, 5, 3)) == L.BatchNormalization().params((5, 5, 3)) == (6, 6)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    Pointwise(8).params((5, 5, 3))  # builds a randomly initialized module to count it...
    assert torch.equal(torch.rand(3), expected)  # ...without moving the user's seeded stream


def test_trained_with_the_cli_saved_under_its_name_and_loaded_back(model_file, tmp_path):
    from cnnkit.cli import main

    run = tmp_path / "run"
    assert main(["train", "--model", str(model_file), "--dataset", "digits", "--epochs", "2",
                 "--batch-size", "64", "--seed", "1", "--quiet", "--out", str(run)]) == 0
    assert json.loads((run / "metrics.json").read_text())["test_accuracy"] > 0.2  # chance: 0.1
    saved = load_file(str(run / "best" / "weights.safetensors"))
    assert saved["layers.pointwise.weight"].shape == (4, 6)
    assert saved["layers.pointwise.bias"].shape == (4,)
    model = cnnkit.load(run / "best")
    assert isinstance(model.get_layer("pointwise"), Pointwise)
    assert model.get_layer("pointwise").kernel_regularizer == 0.01
    # the same network as the model file with the saved weights put in, tensor by tensor
    from_file = load_model_file(model_file)
    from_file.net.load_state_dict(saved)
    x, _ = digits(50)
    np.testing.assert_array_equal(model.predict(x), from_file.predict(x))


def test_training_changes_its_weights_and_freezing_by_name_keeps_them(model_file):
    x, y = digits()
    torch.manual_seed(0)
    model = load_model_file(model_file)
    before = model.layer_module("pointwise").weight.detach().clone()
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, seed=1)
    assert not torch.allclose(model.layer_module("pointwise").weight, before)

    frozen = load_model_file(model_file)
    assert freeze_layers(frozen, ["pointwise"]) == 6 * 4 + 4
    pointwise, dense = (frozen.layer_module(n).state_dict() for n in ("pointwise", "dense"))
    pointwise = {k: v.clone() for k, v in pointwise.items()}
    dense = {k: v.clone() for k, v in dense.items()}
    frozen.fit(x, y, epochs=1, batch_size=64, verbose=0, seed=1)
    for key, value in frozen.layer_module("pointwise").state_dict().items():
        assert torch.equal(value, pointwise[key]), key
    assert not torch.equal(frozen.layer_module("dense").linear.weight, dense["linear.weight"])


def test_l2_penalty_is_its_factor_times_its_squared_kernel_not_its_bias(model_file):
    model = load_model_file(model_file)
    module = model.layer_module("pointwise")
    with torch.no_grad():
        module.bias.fill_(100.0)  # a bias is not a kernel: it must not count
    expected = 0.01 * module.weight.detach().pow(2).sum()
    assert torch.allclose(model.l2_penalty().detach(), expected)


def test_keras_layout_weights_by_name(model_file):
    model = load_model_file(model_file)
    kernel = np.arange(24, dtype=np.float32).reshape(4, 6)
    model.set_layer_weights("pointwise", [kernel, np.ones(4, np.float32)])
    weights = model.get_weights()
    assert len(weights) == 3  # conv2d, pointwise, dense: the layers with weights
    np.testing.assert_array_equal(weights[1][0], kernel)
    with pytest.raises(CnnkitError, match="layer 'flatten' \\(Flatten\\) has no weights"):
        model.set_layer_weights("flatten", [kernel])


def test_registering_a_taken_name_is_one_clear_error():
    assert register_layer(Pointwise) is Pointwise  # the same class again: fine

    with pytest.raises(CnnkitError, match="'Conv2D' is already cnnkit.layers.core.Conv2D"):
        @register_layer
        class Conv2D(Layer):
            pass

    with pytest.raises(CnnkitError, match="is not a subclass of cnnkit.layers.Layer"):
        register_layer(PointwiseModule)
    assert L.LAYER_TYPES["Conv2D"] is L.Conv2D


def test_an_unregistered_layer_in_a_model_file_says_how_to_register(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(MODEL_YAML.replace("Pointwise", "Depthwise"))
    with pytest.raises(CnnkitError, match="unknown layer type 'Depthwise'.*register_layer"):
        load_model_file(path)
