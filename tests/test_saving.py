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
