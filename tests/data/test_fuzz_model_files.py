"""Fuzzed model-file readers: Keras files (.keras zip, its config.json and cnnkit.json, its
HDF5 weights; legacy .h5) and ONNX files with their metadata. Whatever a file holds, reading it
returns a model (a session) or raises one CnnkitError line; never another exception, a hang or
an allocation of what a header claims.

The valid files to start from are written by cnnkit itself (its Keras writer, whose files real
Keras reads back in tests/keras/test_keras_files.py, and its ONNX exporter). Hypothesis edits
bytes anywhere, or edits the parsed JSON trees (a value replaced, deleted or added at any
depth). bench/fuzz_readers.py runs the same readers under coverage-guided atheris."""
import io
import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from _fuzzing import KEYS, MODEL, edited, fuzz, loads_or_one_line, mutated, scratch
from hypothesis import given
from hypothesis import strategies as st

from cnnkit.errors import CnnkitError
from cnnkit.model.keras_files import load_keras_file
from cnnkit.model.keras_writing import h5_bytes, keras_bytes
from cnnkit.model.sequential import Sequential
from cnnkit.serve.onnx import model_bytes, model_metadata, open_session

BASE = Sequential.from_config(
    {**MODEL, "layers": [{"Conv2D": {"filters": 2, "kernel_size": 3, "activation": "relu"}},
                         {"BatchNormalization": {}}, *MODEL["layers"][1:]]})
BASE.class_names = ["cat", "dog"]
KERAS = keras_bytes(BASE)


def graph_keras_bytes() -> bytes:
    """A functional model that is not a chain (two branches added), so that reading it walks
    Keras's inbound_nodes and keras_history."""
    import cnnkit.keras as k
    from cnnkit.keras import layers

    x = k.Input((4, 4, 1))
    added = layers.Add()([layers.Conv2D(2, 3, padding="same")(x), layers.Conv2D(2, 1)(x)])
    return keras_bytes(k.Model(x, layers.Dense(2, activation="softmax")(layers.Flatten()(added))))


KERAS_GRAPH = graph_keras_bytes()
H5 = h5_bytes(BASE)
ONNX = model_bytes(BASE, metadata=model_metadata(BASE, "dynamic", ["cat", "dog"]))
KERAS_KEYS = st.one_of(KEYS, st.sampled_from(
    ["class_name", "filters", "kernel_size", "strides", "padding", "activation", "batch_shape",
     "inbound_nodes", "build_config", "name", "axis", "epsilon", "use_bias", "preprocessing",
     "args", "keras_history", "input_layers", "output_layers", "kwargs", "training"]))


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def zipped(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def check_keras(data: bytes, suffix: str = ".keras") -> None:
    with scratch() as d:
        path = Path(d) / f"m{suffix}"
        path.write_bytes(data)
        model = loads_or_one_line(load_keras_file, path, Sequential)
        assert model is None or model.count_params() < 10**6


@fuzz(60)
@given(data=mutated(KERAS))
def test_mutated_keras_files_load_or_fail_in_one_line(data):
    check_keras(data)


@fuzz(60)
@given(member=st.sampled_from(["config.json", "cnnkit.json", "model.weights.h5"]),
       data=st.data())
def test_keras_files_with_a_mutated_member_load_or_fail_in_one_line(member, data):
    files = members(KERAS)
    check_keras(zipped(files | {member: data.draw(mutated(files[member]))}))


@fuzz(120)
@given(base=st.sampled_from([KERAS, KERAS_GRAPH]),
       member=st.sampled_from(["config.json", "cnnkit.json"]), data=st.data())
def test_keras_configs_with_any_values_load_or_fail_in_one_line(base, member, data):
    files = members(base)
    tree = data.draw(edited(json.loads(files[member]), KERAS_KEYS))
    check_keras(zipped(files | {member: json.dumps(tree).encode()}))


@fuzz(40)
@given(data=mutated(H5))
def test_mutated_legacy_h5_files_load_or_fail_in_one_line(data):
    check_keras(data, ".h5")


@fuzz(40)
@given(data=st.data())
def test_legacy_h5_model_configs_with_any_values_load_or_fail_in_one_line(data):
    buf = io.BytesIO(H5)
    with h5py.File(buf, "a") as f:
        tree = data.draw(edited(json.loads(f.attrs["model_config"]), KERAS_KEYS))
        f.attrs["model_config"] = json.dumps(tree)
    check_keras(buf.getvalue(), ".h5")


def _first_layer(f):
    g = f["model_weights"]
    return g[next(k for k in g if g[k].attrs.get("weight_names") is not None
                  and len(g[k].attrs["weight_names"]))]


# what the fuzzing found raising tracebacks: attributes of another type, names not UTF-8
@pytest.mark.parametrize("edit, message", [
    (lambda f: f.attrs.__setitem__("model_config", 5), "model_config: holds int64, not JSON text"),
    (lambda f: f.attrs.__setitem__("training_config", 7),
     "training_config: holds int64, not JSON text"),
    (lambda f: _first_layer(f).attrs.__setitem__(
        "weight_names", np.array([b"\xed\xb3\xbf"], dtype=h5py.string_dtype("utf-8"))),
     "damaged HDF5 weights"),
])
def test_legacy_h5_attributes_of_another_type_or_encoding_are_one_line(edit, message, tmp_path):
    buf = io.BytesIO(H5)
    with h5py.File(buf, "a") as f:
        f.attrs["training_config"] = json.dumps({"loss": "mse"})
        edit(f)
    (tmp_path / "m.h5").write_bytes(buf.getvalue())
    with pytest.raises(CnnkitError) as e:
        load_keras_file(tmp_path / "m.h5", Sequential)
    assert message in str(e.value) and "\n" not in str(e.value)


def check_onnx(data: bytes) -> None:
    with scratch() as d:
        (Path(d) / "m.onnx").write_bytes(data)
        loads_or_one_line(open_session, Path(d) / "m.onnx")


@fuzz(40)
@given(data=mutated(ONNX))
def test_mutated_onnx_files_open_or_fail_in_one_line(data):
    check_onnx(data)


@fuzz(60)
@given(key=st.sampled_from(["input_shape", "class_names", "preprocessing", "dataset",
                            "test_accuracy"]), data=st.data())
def test_onnx_metadata_with_any_values_opens_or_fails_in_one_line(key, data):
    import onnx

    proto = onnx.load_from_string(ONNX)
    entry = next(e for e in proto.metadata_props if e.key == key)
    entry.value = json.dumps(data.draw(edited(json.loads(entry.value))))
    check_onnx(proto.SerializeToString())


def test_a_legacy_h5_file_on_which_libhdf5_loops_is_one_line_in_bounded_time(monkeypatch, capsys,
                                                                            tmp_path):
    """A real find of the fuzzing (two bytes of H5 changed, in the model_config attribute's
    message): h5py's read of its attribute spins in libhdf5's C code, for ever, unstoppable
    from Python. The structure is walked in a child first, killed at its deadline."""
    import time

    import cnnkit.model.keras_archive as archive
    from cnnkit.cli import main

    damaged = Path(__file__).parents[1] / "fixtures" / "hdf5_attribute_loop.h5"
    monkeypatch.setattr(archive, "H5_SECONDS", 2.0)
    start = time.monotonic()
    assert main(["summary", str(damaged)]) == 2
    took = time.monotonic() - start
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "damaged HDF5 file" in err and "did not finish in 2 s" in err
    assert took < 10
    intact = tmp_path / "intact.h5"
    intact.write_bytes(H5)
    model = load_keras_file(intact, Sequential)  # an intact one loads as before
    assert model.count_params() == BASE.count_params()
