"""Keras files that lie or are malformed: refused in one line, fast, in bounded memory.

Real Keras 3 (torch backend) writes a small valid .keras and legacy .h5; each case edits one
thing a hostile or damaged file could hold (a zip member that expands a thousand-fold, an HDF5
dataset claiming terabytes, a config asking for a model of gigabytes, a layer that is not an
object, odd weight names, wrong cnnkit.json types) and cnnkit must refuse it with one
CnnkitError line naming the file, never a traceback or an allocation of what the file claims.
"""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported anywhere

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import cnnkit
from cnnkit.errors import CnnkitError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def saved(keras, tmp_path_factory):
    """A Keras Sequential (conv, batch norm, dense) saved as .keras and .h5, and its output."""
    from keras import layers

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), layers.Conv2D(2, 3, activation="relu"),
                              layers.BatchNormalization(), layers.Flatten(),
                              layers.Dense(3, activation="softmax")])
    d = tmp_path_factory.mktemp("keras-readers")
    model.save(d / "m.keras")
    model.save(d / "m.h5")
    x = keras.Input((8, 8, 1))  # and a functional model that is not a chain
    added = layers.Add()([layers.Conv2D(2, 3, padding="same")(x), layers.Conv2D(2, 1)(x)])
    keras.Model(x, layers.Dense(2)(layers.Flatten()(added))).save(d / "f.keras")
    x = np.random.default_rng(0).random((2, 8, 8, 1)).astype("float32")
    return d, x, np.asarray(model.predict(x, verbose=0))


def members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def keras_file(path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def config_edited(saved, edit) -> dict[str, bytes]:
    files = members(saved[0] / "m.keras")
    config = json.loads(files["config.json"])
    edit(config, config["config"]["layers"])
    return files | {"config.json": json.dumps(config).encode()}


def weights_edited(saved, edit) -> dict[str, bytes]:
    files = members(saved[0] / "m.keras")
    buf = io.BytesIO(files["model.weights.h5"])
    with h5py.File(buf, "a") as f:
        edit(f["layers/conv2d/vars"])
    return files | {"model.weights.h5": buf.getvalue()}


def replace_dataset(group, name, **dataset):
    del group[name]
    group.create_dataset(name, **dataset)


MALFORMED = {  # case: (the file's members, made from the valid ones; what the line says)
    "a layer that is not an object": (
        lambda s: config_edited(s, lambda c, layers: layers.__setitem__(1, 5)),
        "layers[1] is 5; valid: a mapping"),
    "a config that is a list of numbers": (
        lambda s: config_edited(s, lambda c, layers: c.__setitem__("config", [1])),
        "layers[0] is 1; valid: a mapping"),
    "a Conv2D without filters": (
        lambda s: config_edited(s, lambda c, layers: layers[1]["config"].pop("filters")),
        "filters"),
    "a kernel_size that is text": (
        lambda s: config_edited(s, lambda c, layers: layers[1]["config"].update(kernel_size="x")),
        "kernel_size='x'"),
    "config.json nested 100,000 deep": (
        lambda s: members(s[0] / "m.keras") | {"config.json": b"[" * 100_000 + b"]" * 100_000},
        "config.json: corrupt JSON (lists and mappings nested too deep"),
    "config.json of 5 MB": (
        lambda s: members(s[0] / "m.keras") | {"config.json": b" " * (5 * 2**20) + b"{}"},
        "config.json declares 5,242,882 bytes; valid: at most 4,194,304"),
    "cnnkit.json a list": (
        lambda s: members(s[0] / "m.keras") | {"cnnkit.json": b"[1]"},
        "cnnkit.json: a list; valid: a mapping"),
    "cnnkit.json class_names a number": (
        lambda s: members(s[0] / "m.keras") | {"cnnkit.json": b'{"class_names": 5}'},
        "cnnkit.json: class_names=5; valid: a list of names"),
    "cnnkit.json preprocessing text": (
        lambda s: members(s[0] / "m.keras") | {"cnnkit.json": b'{"preprocessing": "x"}'},
        "cnnkit.json: preprocessing='x'; valid: a mapping"),
    "a vars/ name that is not a number": (
        lambda s: weights_edited(s, lambda g: g.move("0", "kernel")),
        "weight 'kernel' is not a numbered dataset"),
    "a vars/ entry that is a group": (
        lambda s: weights_edited(s, lambda g: (g.__delitem__("0"), g.create_group("0"))),
        "weight '0' is not a numbered dataset"),
    "a weight of strings": (
        lambda s: weights_edited(s, lambda g: replace_dataset(
            g, "0", data=np.full((3, 3, 1, 2), b"ab"))),
        "holds |S2; valid: numbers"),
    "a weight claiming 4 TiB": (
        lambda s: weights_edited(s, lambda g: replace_dataset(
            g, "0", shape=(2**20, 2**20), dtype="f4")),
        "weight of shape (1048576, 1048576) does not fit (3, 3, 1, 2)"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_keras_files_are_one_line_naming_the_file(saved, tmp_path, case):
    make, says = MALFORMED[case]
    path = keras_file(tmp_path / "bad.keras", make(saved))
    with pytest.raises(CnnkitError) as e:
        cnnkit.load(path)
    assert "\n" not in str(e.value) and str(e.value).startswith(str(path))
    assert says in str(e.value)


@pytest.mark.parametrize("edit,says", [
    (lambda layers: layers[2].update(inbound_nodes=5), "malformed model config (TypeError"),
    (lambda layers: layers[2]["inbound_nodes"][0]["args"][0]["config"].update(keras_history=7),
     "malformed model config (TypeError"),
    (lambda layers: layers[0]["config"].update(batch_shape="abc"), "input"),
])
def test_a_functional_config_of_the_wrong_shape_is_one_line(saved, tmp_path, edit, says):
    files = members(saved[0] / "f.keras")
    config = json.loads(files["config.json"])
    edit(config["config"]["layers"])
    path = keras_file(tmp_path / "bad.keras", files | {"config.json": json.dumps(config).encode()})
    with pytest.raises(CnnkitError) as e:
        cnnkit.load(path)
    assert str(e.value).startswith(str(path)) and says in str(e.value), str(e.value)


def test_the_valid_files_still_predict_what_keras_predicts(saved):
    d, x, expected = saved
    for name in ("m.keras", "m.h5"):
        np.testing.assert_allclose(cnnkit.load(d / name)(x), expected, atol=1e-5)


def test_legacy_h5_weight_claiming_terabytes_is_refused_before_it_is_read(saved, tmp_path):
    path = tmp_path / "bad.h5"
    path.write_bytes((saved[0] / "m.h5").read_bytes())
    with h5py.File(path, "a") as f:
        group = f["model_weights/dense"]
        name = str(group.attrs["weight_names"][0])
        del group[name]
        group.create_dataset(name, shape=(2**20, 2**20), dtype="f4")
    with pytest.raises(CnnkitError, match=r"weight of shape \(1048576, 1048576\) does not fit"):
        cnnkit.load(path)


# -- memory: files of kilobytes that ask for gigabytes ---------------------------------------
def bomb(saved, path) -> Path:
    """1 MB on disk: model.weights.h5 deflated from 1 GiB of zeros."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, data in members(saved[0] / "m.keras").items():
            if name != "model.weights.h5":
                z.writestr(name, data)
        with z.open("model.weights.h5", "w", force_zip64=True) as f:
            for _ in range(256):
                f.write(bytes(4 * 2**20))
    return path


def huge_model(saved, path) -> Path:
    """22 KB on disk: the config's last Dense asks for 2**24 units (1.2 billion parameters,
    4.6 GiB), under cnnkit's model-size limit, with the weights of 3 units."""
    edit = lambda c, layers: layers[-1]["config"].update(units=2**24)  # noqa: E731
    return keras_file(path, config_edited(saved, edit))


def terabytes(saved, path) -> Path:
    """22 KB on disk: a kernel dataset of no stored bytes claiming 4 TiB."""
    return keras_file(path, weights_edited(saved, lambda g: replace_dataset(
        g, "0", shape=(2**20, 2**20), dtype="f4")))


CHILD = """
import resource, sys, time
import cnnkit
from cnnkit.errors import CnnkitError
cnnkit.load(sys.argv[1])  # the valid file first: every import and first-use cost paid
for path in sys.argv[2:]:
    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
    try:
        cnnkit.load(path)
        print("LOADED", path)
    except CnnkitError as e:
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(f"{grown // 1024} {time.perf_counter() - start:.2f} {e}")
"""


def test_small_files_asking_for_gigabytes_are_refused_fast_in_bounded_memory(saved, tmp_path):
    """Each refused in under a second with peak RSS grown by under 64 MB, measured in a fresh
    process (its peak is the loads' own, not this test session's)."""
    files = [bomb(saved, tmp_path / "bomb.keras"), huge_model(saved, tmp_path / "huge.keras"),
             terabytes(saved, tmp_path / "tib.keras")]
    assert files[0].stat().st_size < 1.1 * 2**20 and files[1].stat().st_size < 32 * 2**10
    out = subprocess.run([sys.executable, "-c", CHILD, str(saved[0] / "m.keras"), *map(str, files)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert len(lines) == 3, out.stdout
    for path, line in zip(files, lines):
        grown_mb, seconds, message = line.split(" ", 2)
        assert int(grown_mb) < 64 and float(seconds) < 1.0, line
        assert message.startswith(str(path)), line
    assert "declares 1,073,741,824 bytes but stores" in lines[0]
    assert "the model has 1,224,736,796 parameters (4.6 GiB as float32)" in lines[1]
    assert "does not fit (3, 3, 1, 2)" in lines[2]


@pytest.mark.parametrize("case", ["a layer that is not an object", "a weight claiming 4 TiB",
                                  "config.json nested 100,000 deep"])
def test_cnnkit_serve_and_summary_refuse_a_malformed_keras_file_in_one_line(saved, tmp_path,
                                                                            capsys, case):
    from cnnkit.cli import main

    make, says = MALFORMED[case]
    path = keras_file(tmp_path / "bad.keras", make(saved))
    for command in (["serve", str(path), "--port", "0"], ["summary", str(path)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("cnnkit: error: ") and says in err
