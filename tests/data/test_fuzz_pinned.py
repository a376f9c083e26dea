"""Inputs that once broke a reader, pinned as inline bytes: each now loads or fails in one
CnnkitError line (the properties that found them are in test_fuzz_readers.py)."""
import gzip
import io
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from _fuzzing import IDX_IMAGES, STATE, X, Y_NPY, npy, npz_bytes, write_dir, zip_of
from PIL import Image

from cnnkit.data.folder import load_folder
from cnnkit.data.idx import read_idx
from cnnkit.data.npz import MAX_CLASSES, load_npz
from cnnkit.errors import CnnkitError
from cnnkit.model.files import load_model_file
from cnnkit.train.state import read_state


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
    # the class is named as it is shown: the byte that is not UTF-8 as \xfe (errors.printable)
    assert ds.class_names == ["cat\\xfe", "dog"] and ds.y_train.tolist() == [0, 1]
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
