"""One resolver for every model reference (cnnkit.model.resolve) and the model contract.

Each kind (preset, run directory, saved model, model file, Keras file, ONNX file), prefixed or
guessed, names the same model to `cnnkit.load`, `cnnkit summary`, evaluate, predict and the
Predictor; `cnnkit summary RUN_DIR` and `cnnkit.load(RUN_DIR)` take a run directory as the
other commands do (they refused one before)."""
import json

import numpy as np
import pytest
import torch

import cnnkit
from cnnkit import RunSpec
from cnnkit.cli import main
from cnnkit.errors import CnnkitError
from cnnkit.model.resolve import KINDS, open_model, parse_reference

LAYERS = [{"Conv2D": {"filters": 4, "kernel_size": 3, "activation": "relu"}},
          {"Flatten": {}}, {"Dense": {"units": 10, "activation": "softmax"}}]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One epoch of a small model on digits: a run directory with best/."""
    out = tmp_path_factory.mktemp("runs") / "digits"
    model = {"input_shape": [8, 8, 1], "layers": LAYERS}
    cnnkit.run(RunSpec(model=model, dataset="digits", epochs=1, batch_size=64, seed=1,
                       verbose=0, out=str(out)))
    return out


@pytest.fixture(scope="module")
def references(run_dir, tmp_path_factory):
    """{kind: a path of that kind holding the run's best model (a preset: its name)}."""
    folder = tmp_path_factory.mktemp("refs")
    best = cnnkit.load(run_dir / "best")
    best.save(folder / "saved")
    best.save(folder / "model.keras")
    (folder / "model.json").write_text(json.dumps(best.get_config()))
    return {"run": run_dir, "saved": folder / "saved", "keras": folder / "model.keras",
            "file": folder / "model.json"}


def outputs(model):
    x = cnnkit.data.load_dataset("digits").x_train[:5]
    return model.predict(x)


def test_load_takes_a_run_directory_as_its_best_model(run_dir):
    model = cnnkit.load(run_dir)
    np.testing.assert_array_equal(outputs(model), outputs(cnnkit.load(run_dir / "best")))
    assert cnnkit.load(f"run:{run_dir}").get_config() == model.get_config()


def test_summary_takes_a_run_directory(run_dir, capsys):
    assert main(["summary", str(run_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["input_shape"] == [8, 8, 1]
    assert [layer["type"] for layer in summary["layers"]] == ["Conv2D", "Flatten", "Dense"]
    assert main(["summary", f"run:{run_dir}"]) == 0
    assert "Total params: 1,490" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["run", "saved", "keras"])
def test_every_kind_with_weights_gives_the_same_outputs(references, kind):
    expected = outputs(cnnkit.load(references["run"]))
    for ref in (references[kind], f"{kind}:{references[kind]}"):
        np.testing.assert_allclose(outputs(cnnkit.load(ref)), expected, atol=1e-6)
        model, run = open_model(ref)
        assert (run is not None) == (kind == "run")


def test_a_model_file_and_a_preset_give_their_description(references):
    for ref in (references["file"], f"file:{references['file']}"):
        assert cnnkit.load(ref).count_params() == 1490
    for ref in ("seed003-cnn", "preset:seed003-cnn"):
        assert cnnkit.load(ref).count_params() == cnnkit.create_model("seed003-cnn").count_params()


@pytest.mark.parametrize("text, kind", [
    ("preset:best-cnn", "preset"), ("run:runs/x", "run"), ("saved:m", "saved"),
    ("file:m.yaml", "file"), ("keras:m.h5", "keras"), ("onnx:m.onnx", "onnx"),
    ("seed003-cnn", "preset"), ("cnn.yaml", "file"), ("cnn.toml", "file"), ("m.keras", "keras"),
    ("m.H5", "keras"), ("m.onnx", "onnx"),
])
def test_references_parse_by_prefix_or_suffix(text, kind):
    assert parse_reference(text).kind == kind


def test_a_run_adapts_a_prefixed_preset_to_its_data_as_a_bare_name():
    """train --model preset:NAME is the preset, rebuilt for the data's 8x8 digits."""
    result = cnnkit.run(RunSpec(model="preset:seed003-cnn", dataset="digits", epochs=1,
                                batch_size=64, seed=1, verbose=0))
    assert tuple(result.model.input_shape) == (8, 8, 1)
    with pytest.raises(CnnkitError, match="unknown preset 'seed9'"):
        cnnkit.run(RunSpec(model="preset:seed9", dataset="digits", epochs=1, verbose=0))


def test_a_name_that_is_two_things_is_refused_with_both_prefixed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cnnkit.create_model("seed003-cnn").save("seed003-cnn")  # a folder named like the preset
    with pytest.raises(CnnkitError) as e:
        cnnkit.load("seed003-cnn")
    assert "saved:seed003-cnn or preset:seed003-cnn" in str(e.value)
    assert cnnkit.load("saved:seed003-cnn").count_params() == \
        cnnkit.load("preset:seed003-cnn").count_params()


def test_unknown_reference_lists_every_valid_form(tmp_path):
    with pytest.raises(CnnkitError) as e:
        cnnkit.load("no-such-model")
    message = str(e.value)
    assert "unknown model 'no-such-model'" in message and "\n" not in message
    assert all(f"{kind}:" in message for kind in KINDS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CnnkitError, match="missing model.json; not a saved cnnkit model"):
        cnnkit.load(tmp_path / "empty")
    with pytest.raises(CnnkitError, match="not a run directory"):
        cnnkit.load(f"run:{tmp_path / 'empty'}")


def test_an_onnx_file_is_refused_by_load_and_named(tmp_path):
    with pytest.raises(CnnkitError, match="m.onnx: an ONNX file runs on onnxruntime through "
                                          "cnnkit.Predictor"):
        cnnkit.load(tmp_path / "m.onnx")


def test_options_for_another_kind_are_refused(references):
    with pytest.raises(CnnkitError, match="scale=1 is for Keras files"):
        cnnkit.load(references["saved"], scale=1)
    with pytest.raises(CnnkitError, match="module= is for the weights of your own nn.Module"):
        cnnkit.load("seed003-cnn", module=torch.nn.Linear(2, 2))


def test_every_command_that_names_a_model_takes_a_run(run_dir, tmp_path, capsys):
    """predict, evaluate, inspect, plot-model and summary: the same run directory, prefixed."""
    from PIL import Image

    image = tmp_path / "digit.png"
    Image.new("L", (8, 8), 128).save(image)
    ref = f"run:{run_dir}"
    assert main(["summary", ref]) == 0
    assert main(["plot-model", ref, "--out", str(tmp_path / "m.svg")]) == 0
    assert main(["predict", ref, str(image), "--runtime", "torch"]) == 0
    assert main(["evaluate", ref, "--runtime", "torch", "--out", str(tmp_path / "ev")]) == 0
    assert main(["inspect", ref, str(image), "--out", str(tmp_path / "inside")]) == 0
    assert "predicted class" in capsys.readouterr().out


class CNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))

    def forward(self, x):
        return self.net(x)


CONTRACT = ("net", "input_shape", "class_names", "preprocessing", "output_activation", "save",
            "summary_dict", "predict")


def test_every_model_kind_gives_the_model_contract(references):
    """Sequential, a user's nn.Module (ModuleModel) and a Keras file's model give the same
    names: network, input shape, class names, preprocessing, output activation, save, summary."""
    from cnnkit.model.contract import Model, check_model
    from cnnkit.model.module import ModuleModel

    module = ModuleModel(CNN(), input_shape=(8, 8, 1), class_names=[str(i) for i in range(10)])
    for model in (cnnkit.load(references["saved"]), cnnkit.load(references["keras"]), module):
        assert isinstance(model, Model), type(model).__name__
        check_model(model)
        assert all(hasattr(model, name) for name in CONTRACT)
        assert tuple(model.input_shape) == (8, 8, 1)
        assert model.summary_dict()["input_shape"] == [8, 8, 1]
        assert outputs(model).shape == (5, 10)
    with pytest.raises(CnnkitError, match="not a cnnkit model: Linear lacks net"):
        check_model(torch.nn.Linear(2, 2))
