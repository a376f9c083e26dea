"""Fuzzed readers: whatever bytes a user's file holds, a reader returns data or raises one
CnnkitError line; never another exception, a hang or a huge allocation.

Hypothesis starts from small valid files cnnkit itself writes (IDX, npz, image folders and their
cache, model files, saved models, training states) and flips, sets, cuts, deletes and inserts
bytes, or builds headers from arbitrary fields: type codes, dtypes, shapes up to 2**32 per
dimension, labels such as 2**40 or -1. Strategies bound every size, so no example can honestly
need much memory; examples are derandomized and no database is written, so every run sees the
same inputs. The inputs that once broke a reader are pinned at the end as inline bytes;
bench/fuzz_readers.py runs the same readers under coverage-guided atheris.
"""
import gc
import gzip
import io
import json
import os
import struct
import tempfile
import tracemalloc
import zipfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, configuration, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from cnnkit.data.folder import load_folder
from cnnkit.data.idx import encode_idx, read_idx, read_idx_header, read_images_labels
from cnnkit.data.npz import MAX_CLASSES, load_npz
from cnnkit.errors import CnnkitError
from cnnkit.model.files import load_model_file
from cnnkit.model.saving import load as load_saved_model
from cnnkit.model.sequential import Sequential
from cnnkit.train.state import read_state, write_state

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


# -- valid files to start from ---------------------------------------------------------------
RNG = np.random.default_rng(0)
X = RNG.integers(0, 256, (3, 4, 4), dtype=np.uint8)
Y = np.array([0, 1, 1], np.uint8)
IDX_IMAGES, IDX_LABELS = encode_idx(X), encode_idx(Y)
IDX_BASES = [IDX_IMAGES, gzip.compress(IDX_IMAGES, mtime=0)]


def npz_bytes(compressed=False, **arrays) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


NPZ_BASES = [npz_bytes(x_train=X, y_train=Y),
             npz_bytes(True, x_train=X, y_train=Y, x_test=X[:2], y_test=Y[:2]),
             npz_bytes(x_train=(X / 255).astype(np.float32), y_train=np.eye(2)[Y],
                       class_names=np.array(["cat", "dog"]))]


def image_bytes(fmt: str, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (3, 4, 3), dtype=np.uint8)).convert(mode).save(buf, fmt)
    return buf.getvalue()


IMAGES = [image_bytes(fmt, mode) for fmt, mode in
          [("PNG", "L"), ("PNG", "RGBA"), ("BMP", "RGB"), ("GIF", "P"), ("JPEG", "RGB"),
           ("TIFF", "L"), ("WEBP", "RGB")]]

MODEL = {"input_shape": [4, 4, 1], "layers": [{"Conv2D": {"filters": 2, "kernel_size": 3}},
                                              {"Flatten": {}},
                                              {"Dense": {"units": 2, "activation": "softmax"}}]}
MODEL_TEXTS = {
    ".json": json.dumps(MODEL).encode(),
    ".yaml": b"input_shape: [4, 4, 1]\nlayers:\n  - Conv2D: {filters: 2, kernel_size: 3}\n"
             b"  - Flatten: {}\n  - Dense: {units: 2, activation: softmax}\n",
    ".toml": b'input_shape = [4, 4, 1]\n[[layers]]\nConv2D = {filters = 2, kernel_size = 3}\n'
             b'[[layers]]\nFlatten = {}\n[[layers]]\nDense = {units = 2, activation = "softmax"}\n',
}


def dir_files(write) -> dict[str, bytes]:
    with scratch() as d:
        write(Path(d) / "x")
        return {p.name: p.read_bytes() for p in (Path(d) / "x").iterdir()}


SAVED_MODEL = dir_files(Sequential.from_config(MODEL).save)
STATE = dir_files(lambda p: write_state(
    p, {"w": torch.ones(2, 2)},
    {"epoch": 1, "optimizer": {"state": {0: {"exp_avg": torch.zeros(3)}}},
     "history": {"loss": [0.5]}, "pair": (1, "x", None)}))


# -- IDX --------------------------------------------------------------------------------------
def check_idx_split(images: Path, labels: Path) -> None:
    for path in (images, labels):
        loads_or_one_line(read_idx_header, path)
    split = loads_or_one_line(read_images_labels, images, labels)
    if split is not None:
        x, y = split
        assert x.dtype == np.uint8 and x.ndim == 3 and 0 not in x.shape[1:]
        assert y.dtype == np.uint8 and y.shape == (len(x),)


@fuzz(120)
@given(images=st.sampled_from(IDX_BASES).flatmap(mutated),
       labels=st.one_of(st.just(IDX_LABELS), mutated(IDX_LABELS)))
def test_mutated_idx_files_load_or_fail_in_one_line(images, labels):
    with scratch() as d:
        (Path(d) / "i").write_bytes(images)
        (Path(d) / "l").write_bytes(labels)
        check_idx_split(Path(d) / "i", Path(d) / "l")


IDX_TYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
DIMS = st.one_of(st.sampled_from([0, 1, 2, 3, 4, 255, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1]),
                 st.integers(0, 2**32 - 1))


@fuzz(150)
@given(zero=st.sampled_from([0, 0, 1, 0x1F8B]),
       type_code=st.one_of(st.sampled_from(sorted(IDX_TYPES)), st.integers(0, 255)),
       dims=st.lists(DIMS, max_size=6), ndim_lie=st.sampled_from([0, 0, 1, -1, 200]),
       payload=st.one_of(st.none(), st.binary(max_size=256)), gz=st.booleans())
def test_idx_header_fields_load_or_fail_in_one_line(zero, type_code, dims, ndim_lie, payload,
                                                    gz):
    """Any magic, type code, dimension count and dims; the payload either exactly what the
    header promises (None, where that is small) or arbitrary bytes."""
    ndim = max(0, min(255, len(dims) + ndim_lie))
    head = struct.pack(">HBB", zero, type_code, ndim) + b"".join(struct.pack(">I", d) for d in dims)
    itemsize = int(IDX_TYPES.get(type_code, "u1")[-1])
    promised = int(np.prod(dims, dtype=object)) * itemsize if dims else 0
    if payload is None:
        payload = bytes(range(256)) * (promised // 256) + bytes(promised % 256) \
            if promised <= 4096 else b""
    data = head + payload
    with scratch() as d:
        path = Path(d) / "f"
        path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
        arr = loads_or_one_line(read_idx, path)
    if arr is not None:  # then the header was honest: the array holds exactly the bytes after it
        assert zero == 0 and type_code in IDX_TYPES and 1 <= ndim <= min(4, len(dims))
        assert arr.shape == tuple(dims[:ndim])
        big = np.dtype(IDX_TYPES[type_code]).newbyteorder(">")
        assert arr.astype(big).tobytes() == data[4 + 4 * ndim:]


# -- npz --------------------------------------------------------------------------------------
def check_npz(path: Path) -> None:
    ds = loads_or_one_line(load_npz, path)
    if ds is None:
        return
    assert len(ds.class_names) >= 2
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        if x is None:
            continue
        assert x.dtype == torch.uint8 and x.ndim == 4 and x.shape[-1] in (1, 3)
        assert y.dtype == torch.int64 and y.shape == (len(x),)
        assert 0 <= int(y.min()) and int(y.max()) < len(ds.class_names)


@fuzz(120)
@given(data=st.sampled_from(NPZ_BASES).flatmap(mutated))
def test_mutated_npz_archives_load_or_fail_in_one_line(data):
    with scratch() as d:
        (Path(d) / "d.npz").write_bytes(data)
        check_npz(Path(d) / "d.npz")


IMAGE_DTYPES = ["u1", "i1", "<i8", "<u8", "<f2", "<f4", ">f8", "?", "<c8", "<U2", "<m8[s]"]
LABEL_VALUES = st.sampled_from([0, 1, 2, 255, 256, 65535, 65536, 2**40, -1, 2**63 - 1])


@st.composite
def npz_arrays(draw) -> dict[str, np.ndarray]:
    n = draw(st.integers(0, 4))
    shape = (n, draw(st.integers(0, 3)), draw(st.integers(0, 3))) + \
        draw(st.sampled_from([(), (1,), (3,), (0,), (2,)]))
    x = draw(hnp.arrays(np.dtype(draw(st.sampled_from(IMAGE_DTYPES))), shape))
    label_shape = draw(st.sampled_from([(n,), (n,), (n, 1), (n, 3), (n, 0), (n + 1,), ()]))
    label_dtype = draw(st.sampled_from(["<i8", "<u8", "<f8", "?", "u1", "<U1"]))
    if label_dtype in ("<i8", "u1"):
        y = draw(hnp.arrays(np.int64, label_shape, elements=LABEL_VALUES)).astype(label_dtype,
                                                                                   casting="unsafe")
    else:
        y = draw(hnp.arrays(np.dtype(label_dtype), label_shape))
    arrays = {"x_train": x, "y_train": y}
    if draw(st.booleans()):
        arrays |= {"x_test": x[:1], "y_test": y[:1] if y.ndim else y}
    names = draw(st.sampled_from([None, ["a", "b"], ["a", "b", "c"], [b"a", b"b"], [1, 2],
                                  ["solo"], []]))
    if names is not None:
        arrays["class_names"] = np.array(names, dtype=draw(st.sampled_from([None, object])))
    return arrays


@fuzz(150)
@given(arrays=npz_arrays(), compressed=st.booleans())
def test_npz_of_any_arrays_loads_or_fails_in_one_line(arrays, compressed):
    """Dtypes numpy saves (complex, timedelta, strings, objects among them), empty and odd
    shapes, one-hot and column labels, labels such as 2**40 and -1."""
    with scratch() as d, np.errstate(all="ignore"):
        (Path(d) / "d.npz").write_bytes(npz_bytes(compressed, **arrays))
        check_npz(Path(d) / "d.npz")


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
SHAPES = st.lists(st.one_of(st.sampled_from([0, 1, 3, 4, -1, 2**31, 2**40, 10**12]),
                            st.integers(-2, 64)), max_size=5)
DESCRS = st.sampled_from(["|u1", "<i8", ">f4", "<f8", "|b1", "<c8", "<U3", "|S2", "|O", "<m8[s]",
                          "[('a', '<i4')]", "('<u1', (2,))", "'x'", "5", "None", "'|V0'", "'<U0'"])


@fuzz(150)
@given(shape=SHAPES, descr=DESCRS, fortran=st.sampled_from(["False", "True", "1"]),
       version=st.sampled_from([b"\x01\x00", b"\x02\x00", b"\x03\x00", b"\x09\x09"]),
       payload=st.binary(max_size=512), garbled=st.booleans(),
       compression=st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
def test_npy_header_fields_load_or_fail_in_one_line(shape, descr, fortran, version, payload,
                                                    garbled, compression):
    """x_train's .npy header says anything: shapes of 10**12 items or negative, dtypes of
    objects or of zero size, broken syntax; a shape the payload cannot fill must not be
    allocated (the memory test below holds that to a number)."""
    descr = descr if descr[0] in "'[(N5" else repr(descr)
    header = f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {tuple(shape)}, }}"
    if garbled:
        header = header[:len(header) // 2]
    data = zip_of(compression, x_train=npy(header, payload, version), y_train=Y_NPY)
    with scratch() as d:
        (Path(d) / "d.npz").write_bytes(data)
        check_npz(Path(d) / "d.npz")


# -- image folders ----------------------------------------------------------------------------
IMAGE_FILE = st.one_of(st.sampled_from(IMAGES), st.sampled_from(IMAGES).flatmap(mutated),
                       st.binary(max_size=64))
FILE_NAMES = st.sampled_from(["0.png", "1.jpg", "é.bmp", os.fsdecode(b"\xff\xfe.png"),
                              "sub/2.png", "sub/deeper/3.gif", ".hidden.png", "noext"])
CLASS_NAMES = st.sampled_from(["a", "b", "c", os.fsdecode(b"d\xff"), ".e"])


@fuzz(40)
@given(files=st.lists(st.tuples(CLASS_NAMES, FILE_NAMES, IMAGE_FILE), min_size=1, max_size=6),
       cache_edit=st.integers(0, 2**16), train_test=st.booleans())
def test_folders_of_damaged_images_load_or_fail_in_one_line(files, cache_edit, train_test):
    """Images of every format Pillow reads, damaged or not, under odd (non-UTF-8) names; then
    the decode cache damaged: a second load gives back exactly what the first one did."""
    with scratch() as d:
        root = Path(d) / "root"
        for k, (klass, name, data) in enumerate(files):
            split = ("train", "test")[k % 2] if train_test else ""
            path = root / split / klass / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        ds = loads_or_one_line(load_folder, root)
        if ds is None:
            return
        assert ds.x_train.dtype == torch.uint8 and ds.x_train.ndim == 4
        assert ds.y_train.shape == (len(ds.x_train),)
        assert 0 <= int(ds.y_train.min()) and int(ds.y_train.max()) < len(ds.class_names)
        cache = Path(ds.info["cache"])
        pixels = ds.x_train.clone()  # ds.x_train maps the cache: damaged with it, in place
        raw = bytearray(cache.read_bytes())
        raw[cache_edit % len(raw)] ^= 0x5A
        cache.write_bytes(bytes(raw))
        again = load_folder(root)
        assert torch.equal(again.x_train, pixels) and torch.equal(again.y_train, ds.y_train)
        assert again.info["skipped"] == ds.info["skipped"]


# -- model files, saved models, training states (other modules' parsers, same promise) -------
@fuzz(100)
@given(suffix_text=st.sampled_from(sorted(MODEL_TEXTS.items())).flatmap(
    lambda kv: st.tuples(st.just(kv[0]), mutated(kv[1]))))
def test_mutated_model_files_load_or_fail_in_one_line(suffix_text):
    suffix, text = suffix_text
    with scratch() as d:
        (Path(d) / f"m{suffix}").write_bytes(text)
        model = loads_or_one_line(load_model_file, Path(d) / f"m{suffix}")
        assert model is None or isinstance(model, Sequential)


def write_dir(directory: Path, files: dict[str, bytes]) -> None:
    directory.mkdir()
    for name, data in files.items():
        if data is not None:
            (directory / name).write_bytes(data)


@st.composite
def damaged_dir(draw, files: dict[str, bytes]) -> dict[str, bytes | None]:
    """The directory's files with one or two of them damaged, or missing (None)."""
    out = dict(files)
    for name in draw(st.lists(st.sampled_from(sorted(files)), min_size=1, max_size=2,
                              unique=True)):
        out[name] = draw(st.one_of(mutated(files[name]), st.none()))
    return out


@fuzz(80)
@given(files=damaged_dir(SAVED_MODEL))
def test_damaged_saved_models_load_or_fail_in_one_line(files):
    with scratch() as d:
        write_dir(Path(d) / "m", files)
        model = loads_or_one_line(load_saved_model, Path(d) / "m")
        assert model is None or isinstance(model, Sequential)


@fuzz(80)
@given(files=damaged_dir(STATE))
def test_damaged_training_states_load_or_fail_in_one_line(files):
    with scratch() as d:
        write_dir(Path(d) / "s", files)
        loads_or_one_line(read_state, Path(d) / "s")


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


def dumps(tree, suffix: str) -> bytes:
    if suffix == ".yaml":
        import yaml

        return yaml.safe_dump(tree).encode()
    return json.dumps(tree).encode()  # NaN and Infinity as Python's json writes them


# YAML keys need not be strings (`1: x`, `~: y`); JSON's must
@fuzz(100)
@given(suffix=st.sampled_from([".json", ".yaml"]), data=st.data())
def test_model_descriptions_with_any_values_load_or_fail_in_one_line(suffix, data):
    keys = KEYS if suffix == ".json" else st.one_of(KEYS, st.integers(-2, 2), st.none())
    tree = data.draw(edited(MODEL, keys))
    with scratch() as d:
        (Path(d) / f"m{suffix}").write_bytes(dumps(tree, suffix))
        loads_or_one_line(load_model_file, Path(d) / f"m{suffix}")


@fuzz(100)
@given(meta=edited(json.loads(SAVED_MODEL["model.json"])))
def test_saved_model_descriptions_with_any_values_load_or_fail_in_one_line(meta):
    with scratch() as d:
        write_dir(Path(d) / "m", SAVED_MODEL | {"model.json": dumps(meta, ".json")})
        loads_or_one_line(load_saved_model, Path(d) / "m")


@fuzz(100)
@given(tree=edited(json.loads(STATE["state.json"])))
def test_training_state_trees_with_any_values_load_or_fail_in_one_line(tree):
    with scratch() as d:
        write_dir(Path(d) / "s", STATE | {"state.json": dumps(tree, ".json")})
        loads_or_one_line(read_state, Path(d) / "s")


# -- memory -----------------------------------------------------------------------------------
LIARS = [  # a few hundred bytes that promise gigabytes
    zip_of(x_train=npy("{'descr': '|u1', 'fortran_order': False, 'shape': (100000, 1000, 100), }",
                       bytes(16)), y_train=Y_NPY),
    gzip.compress(struct.pack(">HBB3I", 0, 8, 3, 10**5, 1000, 1000) + bytes(64), mtime=0),
    struct.pack(">HBB4I", 0, 8, 4, 65536, 65536, 65536, 65536),
]


@settings(max_examples=2, derandomize=True, database=None, deadline=timedelta(seconds=60),
          suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False))
def test_200_bad_inputs_in_a_row_leave_memory_bounded(rng):
    """No reader keeps memory for the bad files it refused, nor allocates what a lying header
    promises: Python-level allocations (numpy's included) stay under a few MB, peak and
    retained, over 200 damaged IDX and npz files in a row."""
    def damaged(base: bytes) -> bytes:
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(data) + 1)
            if i < len(data) and rng.random() < 0.6:
                data[i] ^= 1 << rng.randrange(8)
            else:
                del data[i:]
        return bytes(data) or b"\x00"

    with scratch() as d:
        idx, npz = Path(d) / "f", Path(d) / "f.npz"
        inputs = [(read_idx, idx, rng.choice(IDX_BASES + LIARS[1:])) if k % 2 else
                  (load_npz, npz, rng.choice(NPZ_BASES + LIARS[:1])) for k in range(200)]
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for load, path, base in inputs:
                path.write_bytes(base if base in LIARS else damaged(base))
                loads_or_one_line(load, path)
            gc.collect()
            retained, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert retained - before < 2 * 2**20, f"{(retained - before) / 2**20:.1f} MB kept"
    assert peak - before < 16 * 2**20, f"{(peak - before) / 2**20:.1f} MB at the peak"


# -- inputs that once broke a reader, pinned --------------------------------------------------
@pytest.mark.parametrize("data, message", [
    # four dims of 65536: their int64 product wrapped to 0 bytes, which "matched" an empty file
    # (ValueError: cannot reshape array of size 0)
    (bytes.fromhex("00000804" + "00010000" * 4), "larger than any array"),
    # a 0 among huge dims: nothing to read, but numpy cannot shape it (ValueError: array is too big)
    (bytes.fromhex("00000804" + "00000000" + "ffffffff" * 3), "larger than any array"),
    # 100 GB promised by a 41-byte gzip file: refused before decompressing anything
    (gzip.compress(bytes.fromhex("00000803" + "000186a0" + "00000400" * 2), mtime=0),
     "more than a .*-byte gzip file can hold"),
])
def test_idx_headers_that_once_broke_the_reader(tmp_path, data, message):
    (tmp_path / "f").write_bytes(data)
    with pytest.raises(CnnkitError, match=message):
        read_idx(tmp_path / "f")


def test_idx_gzip_damaged_in_its_header_says_corrupt_gzip(tmp_path):
    data = bytearray(gzip.compress(IDX_IMAGES, mtime=0))
    data[12] ^= 0xFF  # inside the deflate stream, where the IDX header is
    (tmp_path / "f.gz").write_bytes(bytes(data))
    with pytest.raises(CnnkitError, match="f.gz: (corrupt|truncated) gzip"):
        read_idx(tmp_path / "f.gz")


X_NPY = npy("{'descr': '|u1', 'fortran_order': False, 'shape': (3, 1, 1), }", b"\x07\x08\x09")


@pytest.mark.parametrize("members, message", [
    # 10 GB promised by a 400-byte archive: np.load allocated all of it before failing
    ({"x_train": npy("{'descr': '|u1', 'fortran_order': False, 'shape': (100000, 1000, 100), }",
                     bytes(16)), "y_train": Y_NPY}, "x_train .* truncated"),
    # a 0 among dims of 2**31: numpy cannot shape it (ValueError: array is too big)
    ({"x_train": npy("{'descr': '<i8', 'fortran_order': False, 'shape': (0, 2147483648, "
                     "2147483648), }"), "y_train": Y_NPY}, "larger than any array"),
    # label 2**40: 2**40 + 1 class names were being made (a hang, then MemoryError)
    ({"x_train": X_NPY, "y_train": npy("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }",
                                       struct.pack("<3q", 0, 1, 2**40))},
     "label 1099511627776; valid: class indices 0..65535"),
    # uint64 2**63 + 5 wrapped to a negative int64 ("negative labels (min -9223...)")
    ({"x_train": X_NPY, "y_train": npy("{'descr': '<u8', 'fortran_order': False, 'shape': (3,), }",
                                       struct.pack("<3Q", 0, 1, 2**63 + 5))},
     "label 9223372036854775813"),
    # 1e30 as a float label cast to int64 with a RuntimeWarning, into nonsense
    ({"x_train": X_NPY, "y_train": npy("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
                                       struct.pack("<3d", 0, 1, 1e30))}, "label 1e\\+30"),
    # labels of shape (N, 0): IndexError
    ({"x_train": X_NPY, "y_train": npy("{'descr': '<i8', 'fortran_order': False, 'shape': (3, 0), }")},
     "has shape \\(3, 0\\); expected \\(N,\\) labels"),
    # float images of width 0: ValueError (zero-size array to reduction operation)
    ({"x_train": npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 1, 0), }"),
      "y_train": Y_NPY}, "height and width of at least 1"),
    # complex images: imaginary parts silently dropped (ComplexWarning)
    ({"x_train": npy("{'descr': '<c8', 'fortran_order': False, 'shape': (3, 1, 1), }", bytes(24)),
      "y_train": Y_NPY}, "dtype complex64; expected real numbers"),
    # class names holding code point 0xFFFFFFFF: SystemError from numpy's str()
    ({"x_train": X_NPY, "y_train": Y_NPY,
      "class_names": npy("{'descr': '<U1', 'fortran_order': False, 'shape': (2,), }",
                         b"\xff" * 8)}, "invalid character \\(code point 0xFFFFFFFF\\)"),
    # a header cut mid-dict: tokenize.TokenError from numpy's Python 2 header fallback
    ({"x_train": npy("{'descr': '<f2', 'fortran_order': False, 'shape': (3"), "y_train": Y_NPY},
     "x_train .* corrupt .npy header"),
])
def test_npz_members_that_once_broke_the_reader(tmp_path, members, message):
    (tmp_path / "d.npz").write_bytes(zip_of(**members))
    with pytest.raises(CnnkitError, match=message) as e:
        load_npz(tmp_path / "d.npz")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("offset, value, message", [
    # version needed to extract 21.0 (NotImplementedError: zip file version 21.0)
    (6, b"\xd2\x00", "not an npz archive"),
    # general-purpose flag bit 5 (NotImplementedError: compressed patched data)
    (8, b"\x20\x00", "x_train .*compressed patched data"),
])
def test_npz_zip_features_zipfile_lacks(tmp_path, offset, value, message):
    data = bytearray(zip_of(x_train=X_NPY, y_train=Y_NPY))
    at = data.find(b"PK\x01\x02") + offset  # in x_train's central directory entry
    data[at:at + len(value)] = value
    (tmp_path / "d.npz").write_bytes(bytes(data))
    with pytest.raises(CnnkitError, match=message):
        load_npz(tmp_path / "d.npz")


def test_npz_member_names_in_a_message_stay_on_one_line(tmp_path):
    """Found by bench/fuzz_readers.py: the names of a damaged archive's members, newlines and
    all, were echoed into "is missing array(s) ...; it has: ..."."""
    (tmp_path / "d.npz").write_bytes(zip_of(**{"a\nb": Y_NPY, "c" * 500: Y_NPY}))
    with pytest.raises(CnnkitError, match=r"missing array\(s\) x_train, y_train; it has: "
                                          r"'a\\nb', 'ccc") as e:
        load_npz(tmp_path / "d.npz")
    assert "\n" not in str(e.value) and len(str(e.value)) < 300


def test_npz_labels_up_to_the_class_limit_load(tmp_path):
    y = np.array([0, 1, MAX_CLASSES - 1])
    (tmp_path / "d.npz").write_bytes(npz_bytes(x_train=X, y_train=y))
    assert len(load_npz(tmp_path / "d.npz").class_names) == MAX_CLASSES


def png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((2, 3), value, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_folder_with_file_names_that_are_not_utf8(tmp_path):
    """Linux names are bytes: b'\\xff' was UnicodeEncodeError in the cache key."""
    root = tmp_path / os.fsdecode(b"pets\xff")
    for klass, value in ((os.fsdecode(b"cat\xfe"), 10), ("dog", 20)):
        (root / klass).mkdir(parents=True)
        (root / klass / os.fsdecode(b"\xfd.png")).write_bytes(png(value))
    ds = load_folder(root)
    assert ds.class_names == [os.fsdecode(b"cat\xfe"), "dog"] and ds.y_train.tolist() == [0, 1]
    assert load_folder(root).info["cached"]


def test_folder_nested_deeper_than_the_recursion_limit(tmp_path):
    """A class folder nested 1,100 deep was RecursionError; now its image is found."""
    (tmp_path / "d" / "b").mkdir(parents=True)
    (tmp_path / "d" / "b" / "y.png").write_bytes(png(2))
    chain = [tmp_path / "d" / "a"]
    for _ in range(1100):  # one at a time: os.makedirs recurses too
        chain.append(chain[-1] / "n")
    try:
        for folder in chain:
            folder.mkdir()
        (chain[-1] / "x.png").write_bytes(png(1))
        ds = load_folder(tmp_path / "d")
        assert ds.y_train.tolist() == [0, 1] and ds.x_train[0].flatten().tolist() == [1] * 6
    finally:  # by hand: shutil.rmtree, and so pytest's own clean-up, recurses as deep
        (chain[-1] / "x.png").unlink(missing_ok=True)
        for folder in reversed(chain):
            if folder.is_dir():
                folder.rmdir()


def test_folder_cache_with_a_flipped_pixel_is_rebuilt(tmp_path):
    """A cache still valid as safetensors but with other pixels was returned as it was."""
    for klass, value in (("a", 10), ("b", 20)):
        (tmp_path / "d" / klass).mkdir(parents=True)
        (tmp_path / "d" / klass / "0.png").write_bytes(png(value))
    first = load_folder(tmp_path / "d")
    cache = Path(first.info["cache"])
    pixels = first.x_train.clone()  # first.x_train maps the cache: damaged with it, in place
    raw = bytearray(cache.read_bytes())
    header = 8 + int.from_bytes(raw[:8], "little")
    x_offset = json.loads(raw[8:header])["x_train"]["data_offsets"][0]
    raw[header + x_offset] ^= 0xFF  # the first pixel
    cache.write_bytes(bytes(raw))
    again = load_folder(tmp_path / "d")
    assert not again.info["cached"] and torch.equal(again.x_train, pixels)
    assert load_folder(tmp_path / "d").info["cached"]


# -- findings in readers of other modules, fixed there: minimal inputs, pinned ----------------
def test_model_file_with_keys_of_mixed_types(tmp_path):
    """TypeError: '<' not supported between instances of 'str' and 'int' (from_config sorts
    the unknown keys)."""
    (tmp_path / "m.yaml").write_bytes(b"1: 0\na: 0\n")
    with pytest.raises(CnnkitError):
        load_model_file(tmp_path / "m.yaml")


@pytest.mark.parametrize("tree", [b'{"__items__": 5}', b'{"__tuple__": null}',
                                  b'{"__items__": [[1]]}', b'{"__items__": [[[1], 2]]}'])
def test_training_state_with_broken_tags(tmp_path, tree):
    """TypeError: 'int' object is not iterable; ValueError: not enough values to unpack;
    TypeError: unhashable type: 'list' (all from unpack)."""
    write_dir(tmp_path / "s", STATE | {"state.json": tree})
    with pytest.raises(CnnkitError):
        read_state(tmp_path / "s")
