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
import tracemalloc
import zipfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
from _fuzzing import (IDX_IMAGES, IDX_LABELS, KEYS, MODEL, RNG, SAVED_MODEL, STATE, X, Y, Y_NPY,
                      edited, fuzz, loads_or_one_line, mutated, npy, npz_bytes, scratch,
                      write_dir, zip_of)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from cnnkit.data.folder import load_folder
from cnnkit.data.idx import read_idx, read_idx_header, read_images_labels
from cnnkit.data.npz import load_npz
from cnnkit.model.files import load_model_file
from cnnkit.model.saving import load as load_saved_model
from cnnkit.model.sequential import Sequential
from cnnkit.train.state import read_state


# -- valid files to start from ---------------------------------------------------------------
IDX_BASES = [IDX_IMAGES, gzip.compress(IDX_IMAGES, mtime=0)]


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

MODEL_TEXTS = {
    ".json": json.dumps(MODEL).encode(),
    ".yaml": b"input_shape: [4, 4, 1]\nlayers:\n  - Conv2D: {filters: 2, kernel_size: 3}\n"
             b"  - Flatten: {}\n  - Dense: {units: 2, activation: softmax}\n",
    ".toml": b'input_shape = [4, 4, 1]\n[[layers]]\nConv2D = {filters = 2, kernel_size = 3}\n'
             b'[[layers]]\nFlatten = {}\n[[layers]]\nDense = {units = 2, activation = "softmax"}\n',
}


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
