"""Shared by the fuzz tests (test_fuzz_readers.py: properties; test_fuzz_pinned.py: inputs
that once broke a reader): Hypothesis settings, the one-line check, byte mutations, and the
small valid files cnnkit itself writes that the fuzzing starts from."""
import io
import json
import tempfile
import zipfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, configuration, settings
from hypothesis import strategies as st

from cnnkit.data.idx import encode_idx
from cnnkit.errors import CnnkitError
from cnnkit.model.sequential import Sequential
from cnnkit.train.state import write_state

# Hypothesis caches constants and Unicode tables in ./.hypothesis even with database=None; keep
# the working tree free of it.
configuration.set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "cnnkit-hypothesis")


def fuzz(max_examples: int, **more):
    # deadline: generous on a shared 2-core machine, it still flags an input that takes
    # seconds (a hang in the making) without making the test a timing assert
    return settings(max_examples=max_examples, derandomize=True, database=None,
                    deadline=timedelta(seconds=10),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                    **more)


def loads_or_one_line(load, *args):
    """`load(*args)`, or None when it raised a CnnkitError of one non-empty line. Any other
    exception propagates, and Hypothesis shrinks the input that raised it."""
    try:
        return load(*args)
    except CnnkitError as e:
        assert str(e) and "\n" not in str(e), repr(str(e))
        return None


@st.composite
def mutated(draw, base: bytes) -> bytes:
    """`base` after 1 to 4 edits: a bit flipped, a byte set, cut, extended, deleted, inserted."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(("flip", "set", "cut", "extend", "delete", "insert")))
        if op == "flip" and i < len(data):
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and i < len(data):
            data[i] = draw(st.sampled_from((0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)))
        elif op == "cut":
            del data[i:]
        elif op == "extend":
            data += draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[i:i + draw(st.integers(1, 16))]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def scratch() -> tempfile.TemporaryDirectory:
    """A fresh folder per example (pytest's tmp_path is one per test, not per example)."""
    return tempfile.TemporaryDirectory(prefix="cnnkit-fuzz-")


RNG = np.random.default_rng(0)


X = RNG.integers(0, 256, (3, 4, 4), dtype=np.uint8)


Y = np.array([0, 1, 1], np.uint8)


def npz_bytes(compressed=False, **arrays) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


MODEL = {"input_shape": [4, 4, 1], "layers": [{"Conv2D": {"filters": 2, "kernel_size": 3}},
                                              {"Flatten": {}},
                                              {"Dense": {"units": 2, "activation": "softmax"}}]}


def dir_files(write) -> dict[str, bytes]:
    with scratch() as d:
        write(Path(d) / "x")
        return {p.name: p.read_bytes() for p in (Path(d) / "x").iterdir()}


SAVED_MODEL = dir_files(Sequential.from_config(MODEL).save)


# without its SHA256SUMS, as states from before cnnkit wrote one: a damaged or edited file
# then reaches the checks past the checksum's, which the fuzzing is for
STATE = {name: data for name, data in dir_files(lambda p: write_state(
    p, {"w": torch.ones(2, 2)},
    {"epoch": 1, "optimizer": {"state": {0: {"exp_avg": torch.zeros(3)}}},
     "history": {"loss": [0.5]}, "pair": (1, "x", None)})).items() if name != "SHA256SUMS"}


def npy(header: str, payload: bytes = b"", version: bytes = b"\x01\x00") -> bytes:
    """An .npy member: magic, version, a header dict padded as numpy pads it, the payload."""
    text = header.encode("latin1")
    text += b" " * (63 - (10 + len(text)) % 64) + b"\n"
    size = len(text).to_bytes(2 if version == b"\x01\x00" else 4, "little")
    return b"\x93NUMPY" + version + size + text + payload


def zip_of(compression=zipfile.ZIP_STORED, **members: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in members.items():
            z.writestr(f"{name}.npy", data)
    return buf.getvalue()


Y_NPY = npy("{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }", b"\x00\x01\x01")


def write_dir(directory: Path, files: dict[str, bytes]) -> None:
    directory.mkdir()
    for name, data in files.items():
        if data is not None:
            (directory / name).write_bytes(data)


IDX_IMAGES, IDX_LABELS = encode_idx(X), encode_idx(Y)


# -- parsed JSON: arbitrary values, and valid trees edited anywhere ---------------------------
KEYS = st.one_of(st.text(max_size=6), st.sampled_from(
    ["__tensor__", "__items__", "__tuple__", "format", "config", "layers", "input_shape",
     "preprocessing", "normalize", "mean", "std", "Dense", "units", "class_names"]))
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**64, 2**64), st.floats(), st.text(max_size=8)),
    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(KEYS, kids, max_size=3),
                           # the tags cnnkit.train.state.pack writes, around anything
                           st.dictionaries(st.sampled_from(["__tensor__", "__items__",
                                                            "__tuple__"]), kids,
                                           min_size=1, max_size=1)),
    max_leaves=8)


@st.composite
def edited(draw, tree, keys=KEYS):
    """`tree` (parsed JSON) with 1 to 3 nodes replaced, deleted or added, anywhere in it."""
    tree = json.loads(json.dumps(tree))
    for _ in range(draw(st.integers(1, 3))):
        parent, key, node = None, None, tree
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            parent, key = node, draw(st.sampled_from(sorted(node, key=repr) if isinstance(node, dict)
                                                     else range(len(node))))
            node = node[key]
        op = draw(st.sampled_from(("replace", "delete", "add")))
        if op == "add" and isinstance(node, dict):
            node[draw(keys)] = draw(JSON)
        elif op == "add" and isinstance(node, list):
            node.insert(draw(st.integers(0, len(node))), draw(JSON))
        elif op == "delete" and parent is not None:
            del parent[key]
        elif parent is None:
            tree = draw(JSON)
        else:
            parent[key] = draw(JSON)
    return tree
