"""Model files: YAML, TOML and JSON give the same model; malformed files say where."""
import json

import pytest

from cnnkit.model.files import load_model_file, resolve_model
from cnnkit.errors import CnnkitError

YAML = """input_shape: [28, 28, 1]
layers:
  - Conv2D: {filters: 32, kernel_size: 3, activation: relu}
  - MaxPooling2D: {pool_size: 2}
  - Flatten: {}
  - Dense: {units: 10, activation: softmax}
"""
TOML = """input_shape = [28, 28, 1]
[[layers]]
Conv2D = {filters = 32, kernel_size = 3, activation = "relu"}
[[layers]]
MaxPooling2D = {pool_size = 2}
[[layers]]
Flatten = {}
[[layers]]
Dense = {units = 10, activation = "softmax"}
"""
JSON = json.dumps({"input_shape": [28, 28, 1], "layers": [
    {"Conv2D": {"filters": 32, "kernel_size": 3, "activation": "relu"}},
    {"MaxPooling2D": {"pool_size": 2}}, {"Flatten": {}}, {"Dense": {"units": 10, "activation": "softmax"}}]})


@pytest.mark.parametrize("suffix,text", [(".yaml", YAML), (".toml", TOML), (".json", JSON)])
def test_three_forms_one_model(tmp_path, suffix, text):
    path = tmp_path / f"model{suffix}"
    path.write_text(text)
    model = load_model_file(path)
    assert model.count_params() == 54_410
    assert [r.output_shape for r in model.layer_infos()] == [(26, 26, 32), (13, 13, 32), (5408,), (10,)]


@pytest.mark.parametrize("text,message", [
    ("input_shape: [28, 28, 1]\nlayers:\n  - Conv3D: {filters: 3}\n",
     "layers[0]: unknown layer type 'Conv3D'; valid: Conv2D"),
    ("input_shape: [28, 28, 1]\nlayers:\n  - Conv2D: {filters: 3, kernal_size: 3}\n",
     "layers[0]: Conv2D has no argument 'kernal_size'"),
    ("input_shape: [28, 28, 1]\nlayers:\n  - Conv2D: {filters: 3}\n", "kernel_size"),
    ("input_shape: [28, 28]\nlayers:\n  - Flatten: {}\n", "input_shape"),
    ("layers:\n  - Flatten: {}\n", "missing key 'input_shape'"),
    ("input_shape: [28, 28, 1]\nlayers:\n  - Conv2D: {filters: 3, kernel_size: 3\n", "line 4"),
    ("input_shape: [28, 28, 1]\nlayerz: []\n", "unknown key 'layerz'"),
    ("input_shape: [4, 4, 1]\nlayers:\n  - Conv2D: {filters: 3, kernel_size: 5}\n",
     "layers[0]"),
])
def test_malformed_model_file_names_line_or_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CnnkitError) as e:
        load_model_file(path)
    assert message in str(e.value) and str(path) in str(e.value)
    assert "\n" not in str(e.value)


def test_json_syntax_error_names_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"input_shape": [28, 28, 1],\n "layers": [\n}')
    with pytest.raises(CnnkitError, match="line 3"):
        load_model_file(path)


def test_resolve_model_unknown_name():
    with pytest.raises(CnnkitError, match="unknown model 'nope'.*presets: seed000-first"):
        resolve_model("nope")
