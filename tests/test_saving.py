"""Saved model directories: atomic, self-describing, and strict about mismatched weights."""
import json

import numpy as np
import pytest
from safetensors.numpy import save_file

import cnnkit
from cnnkit import Sequential, layers as L
from cnnkit.errors import CnnkitError


def small():
    return Sequential([L.Conv2D(4, 3, activation="relu"), L.BatchNormalization(), L.Flatten(),
                       L.Dense(3, activation="softmax")], input_shape=(6, 6, 1), class_names=list("abc"))


def test_saved_directory_layout(tmp_path):
    small().save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "weights.safetensors"]
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["input_shape"] == [6, 6, 1] and meta["class_names"] == ["a", "b", "c"]
    assert meta["preprocessing"] == {"normalize": "unit"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_overwrite_keeps_a_complete_model(tmp_path):
    a, b = small(), small()
    a.save(tmp_path / "m")
    b.save(tmp_path / "m")
    x = np.random.default_rng(0).integers(0, 255, (2, 6, 6, 1), dtype=np.uint8)
    np.testing.assert_array_equal(cnnkit.load(tmp_path / "m").predict(x), b.predict(x))


def test_missing_weights(tmp_path):
    small().save(tmp_path / "m")
    (tmp_path / "m" / "weights.safetensors").unlink()
    with pytest.raises(CnnkitError, match="missing weights.safetensors"):
        cnnkit.load(tmp_path / "m")


def test_mismatched_weights(tmp_path):
    small().save(tmp_path / "m")
    save_file({"blocks.0.conv.weight": np.zeros((8, 1, 3, 3), np.float32)},
              str(tmp_path / "m" / "weights.safetensors"))
    with pytest.raises(CnnkitError, match="weights do not match the model"):
        cnnkit.load(tmp_path / "m")


def test_corrupt_weights_and_config(tmp_path):
    small().save(tmp_path / "m")
    (tmp_path / "m" / "weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(CnnkitError, match="unreadable weights"):
        cnnkit.load(tmp_path / "m")
    (tmp_path / "m" / "model.json").write_text("{not json")
    with pytest.raises(CnnkitError, match="corrupt JSON"):
        cnnkit.load(tmp_path / "m")


def test_not_a_model_directory(tmp_path):
    with pytest.raises(CnnkitError, match="not a saved model directory"):
        cnnkit.load(tmp_path / "nothing")


@pytest.mark.parametrize("pre,message", [
    ({"normalize": "zscore"}, "preprocessing {'normalize': 'zscore'} is not understood"),
    ("unit", "preprocessing 'unit' is not understood"),
    ({"normalize": "standardize"}, r"preprocessing mean=None is out of range; valid: 1 number \(one per channel\)"),
    ({"normalize": "standardize", "mean": [0.3, 0.3], "std": [0.4]}, r"mean=\[0.3, 0.3\] is out of range"),
    ({"normalize": "standardize", "mean": [0.3], "std": [0]}, r"std=\[0\] is out of range.*, each > 0"),
])
def test_bad_preprocessing_in_model_json_is_named(tmp_path, pre, message):
    small().save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["preprocessing"] = pre
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CnnkitError, match=message) as e:
        cnnkit.load(tmp_path / "m")
    assert "model.json" in str(e.value) and "\n" not in str(e.value)


def test_standardized_model_round_trips(tmp_path):
    m = small()
    m.preprocessing = {"normalize": "standardize", "mean": [0.25], "std": [0.5]}
    m.save(tmp_path / "m")
    again = cnnkit.load(tmp_path / "m")
    x = np.random.default_rng(0).integers(0, 255, (4, 6, 6, 1), dtype=np.uint8)
    np.testing.assert_array_equal(again.predict(x), m.predict(x))
    unit = small()
    unit.net.load_state_dict(m.net.state_dict())
    assert not np.allclose(unit.predict(x), m.predict(x), atol=1e-4)  # the scaling matters


# -- files from before layers owned their weights by name ------------------------------------------
def deep():
    """Every kind of state and enough torch modules (activations count) for two-digit positions."""
    return Sequential([L.Conv2D(4, 3, activation="relu", padding="same"), L.BatchNormalization(),
                       L.MaxPooling2D(), L.Conv2D(6, 3, activation="elu", name="c2"),
                       L.Activation("relu"), L.MaxPooling2D(), L.Flatten(),
                       L.Dense(8, activation="relu"), L.Dropout(0.2), L.BatchNormalization(),
                       L.Dense(3, activation="softmax")], input_shape=(10, 10, 2))


def positional(model) -> dict:
    """The weights keyed as the previous version wrote them: `blocks.<N>.<key>`, N the position of
    the layer's module among all the modules the network runs (activations included)."""
    net = model.net
    position = {id(m): i for i, m in enumerate(net.steps)}
    old = {}
    for full, value in net.state_dict().items():
        _, name, key = full.split(".", 2)  # layers.<name>.<key>
        old[f"blocks.{position[id(net.layers[name])]}.{key}"] = value.detach().contiguous().numpy()
    return old


def trained_like(model):
    """Distinct non-trivial values everywhere, batch-norm statistics included."""
    import torch

    torch.manual_seed(0)
    with torch.no_grad():
        for value in model.net.state_dict().values():
            if value.is_floating_point():
                value.copy_(torch.rand_like(value) + 0.5)
    return model


def test_model_saved_with_positional_keys_loads_to_identical_outputs(tmp_path):
    model = trained_like(deep())
    model.save(tmp_path / "m")
    old = positional(model)
    assert "blocks.0.conv.weight" in old and "blocks.12.running_var" in old  # 12 sorts before 9
    save_file(old, str(tmp_path / "m" / "weights.safetensors"))
    again = cnnkit.load(tmp_path / "m")
    x = np.random.default_rng(0).integers(0, 255, (5, 10, 10, 2), dtype=np.uint8)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    assert "layers.c2.conv.weight" in again.net.state_dict()


def test_training_state_saved_with_positional_keys_resumes_with_the_same_weights(tmp_path):
    import torch
    from safetensors.torch import load_file

    from cnnkit.train.config import TrainConfig
    from cnnkit.train.state import MODEL_TENSORS
    from cnnkit.train.trainer import Trainer

    model = trained_like(deep())
    config = TrainConfig(epochs=1, batch_size=8, seed=1, verbose=0)
    Trainer(model, config).save_state(tmp_path / "state")
    save_file(positional(model), str(tmp_path / "state" / MODEL_TENSORS))
    (tmp_path / "state" / "SHA256SUMS").unlink()  # old files, from before states had checksums
    assert all(k.startswith("blocks.") for k in load_file(str(tmp_path / "state" / MODEL_TENSORS)))
    fresh = deep()
    Trainer(fresh, config).load_state(tmp_path / "state")
    for key, value in model.net.state_dict().items():
        assert torch.equal(fresh.net.state_dict()[key], value), key


def test_positional_file_of_another_model_is_refused(tmp_path):
    small().save(tmp_path / "m")
    save_file(positional(trained_like(deep())), str(tmp_path / "m" / "weights.safetensors"))
    with pytest.raises(CnnkitError, match="weights do not match the model"):
        cnnkit.load(tmp_path / "m")
