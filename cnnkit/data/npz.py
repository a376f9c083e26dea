"""`npz:PATH` — arrays `x_train, y_train[, x_test, y_test][, class_names]`, as Keras's mnist.npz.

Images may be (N, H, W) or (N, H, W, C) with C in {1, 3}, as uint8 or as numbers in [0, 1]
or [0, 255]; labels may be integers or one-hot rows. Everything is checked up front, so a bad
file fails with one line naming the file, the array and what is wrong.

The decoded uint8 images, converted to the requested channels and size, are cached (keyed by
the file's path, size and mtime) as a memory-mapped file (cnnkit.data.mapped): a second load
does not open the archive, and the processes of a distributed run share one copy. The first
load still holds the archive's arrays in memory once, while they are checked and written.
"""
from __future__ import annotations

import functools
import lzma
import math
import os
import sys
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from cnnkit.data.base import Dataset
from cnnkit.errors import CnnkitError, printable
from cnnkit.fsutil import readable_file


# Without class_names, classes are 0..max label: a stray 2**40 must not become 2**40 names.
MAX_CLASSES = 65_536


def _images(a: np.ndarray, key: str, where: str) -> np.ndarray:
    """(N, H, W[, C]) array → (N, H, W, C); only shape checks here, scaling comes later."""
    if a.ndim == 3:
        a = a[..., None]
    if a.ndim != 4 or a.shape[-1] not in (1, 3):
        raise CnnkitError(
            f"{key} in {where} has shape {a.shape}; expected (N, H, W) or (N, H, W, C) with C 1 or 3"
        )
    if len(a) == 0:
        raise CnnkitError(f"{key} in {where} holds no images")
    if 0 in a.shape[1:3]:
        raise CnnkitError(f"{key} in {where} has shape {a.shape}; images need a height and "
                          "width of at least 1")
    if np.issubdtype(a.dtype, np.inexact) and not np.isfinite(a).all():
        raise CnnkitError(f"{key} in {where} contains NaN or infinite values")
    return a


def _to_uint8(a: np.ndarray, key: str, where: str, scale: float) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    f = a.astype(np.float32)
    lo, hi = float(f.min()), float(f.max())
    if lo < 0 or hi * scale > 255.5:
        raise CnnkitError(
            f"{key} in {where} has values in [{lo:g}, {hi:g}]; expected [0, 1] or [0, 255]"
        )
    return np.clip(np.rint(f * scale), 0, 255).astype(np.uint8)


def _labels(y: np.ndarray, key: str, where: str, n: int) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot rows, as to_categorical makes them
        y = y.argmax(axis=1)
    elif y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise CnnkitError(f"{key} in {where} has shape {y.shape}; expected (N,) labels")
    if y.dtype == np.bool_:
        raise CnnkitError(f"{key} in {where} has dtype {y.dtype}; expected integer labels")
    if len(y) != n:
        raise CnnkitError(
            f"{key} in {where} has {len(y)} labels but x_{key[2:]} has {n} images"
        )
    if not np.issubdtype(y.dtype, np.integer):
        if not (np.isfinite(y).all() and (y == np.round(y)).all()):
            raise CnnkitError(f"{key} in {where} has non-integer labels")
    # checked before the cast to int64, which would wrap uint64 and 1e30 into nonsense
    lo, hi = y.min().item(), y.max().item()
    if lo < 0:
        raise CnnkitError(f"{key} in {where} has negative labels (min {lo!r})")
    if hi >= MAX_CLASSES:
        raise CnnkitError(f"{key} in {where} has label {hi!r}; valid: class indices "
                          f"0..{MAX_CLASSES - 1}")
    return y.astype(np.int64)


def _class_names(a: np.ndarray, where: str) -> list[str]:
    a = np.ascontiguousarray(a.reshape(-1))
    if a.dtype.kind == "S":
        return [printable(c.decode("utf-8", "replace")) for c in a]
    if a.dtype.kind == "U":  # raw UCS-4 from the file: numpy turns a bad code point into SystemError
        codes = a.astype(a.dtype.newbyteorder("=")).view(np.uint32)
        bad = codes[(codes > 0x10FFFF) | ((codes >= 0xD800) & (codes <= 0xDFFF))]
        if len(bad):
            raise CnnkitError(f"class_names in {where} holds an invalid character (code point "
                              f"0x{int(bad[0]):X})")
    return [printable(str(c)) for c in a]


# -- reading the archive ----------------------------------------------------------------------
# np.load trusts each member's header: a few hundred bytes claiming shape (10**12,) make it
# allocate the whole array before it finds the data missing. So members are read here, from
# numpy's own header parser, and memory only grows with bytes the archive really holds.
_KEYS = ("x_train", "y_train", "x_test", "y_test", "class_names")
_NPY_MAGIC, _ZIP_MAGICS = b"\x93NUMPY", (b"PK\x03\x04", b"PK\x05\x06")
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
# What a damaged archive raises from the zip layer (NotImplementedError: a zip feature it lacks,
# such as a flag bit or version), its decompressors and numpy's header parser (tokenize's
# TokenError, from its Python 2 header fallback).
_DAMAGED = (zipfile.BadZipFile, NotImplementedError, zlib.error, lzma.LZMAError, EOFError,
            OSError, ValueError, SyntaxError, tokenize.TokenError)
_CHUNK = 1 << 20


def _read_arrays(path: Path, where: str) -> dict[str, np.ndarray]:
    """The arrays of _KEYS that the archive holds; x_train and y_train (and x_test with y_test)
    must be there."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise CnnkitError(f"cannot read {where}: {e.strerror or e}") from None
    if magic == _NPY_MAGIC:
        raise CnnkitError(f"{where} is a single .npy array, not an npz archive with x_train, y_train")
    if magic[:4] not in _ZIP_MAGICS:
        raise CnnkitError(f"cannot read {where}: not an npz archive (np.savez output)")
    try:
        archive = zipfile.ZipFile(path)
    except _DAMAGED:
        raise CnnkitError(f"cannot read {where}: not an npz archive (np.savez output)") from None
    with archive:
        members = {i.filename[:-4]: i for i in archive.infolist() if i.filename.endswith(".npy")}
        missing = [k for k in ("x_train", "y_train") if k not in members]
        if ("x_test" in members) != ("y_test" in members):
            missing.append("y_test" if "x_test" in members else "x_test")
        if missing:
            raise CnnkitError(
                f"npz file {where} is missing array(s) {', '.join(missing)}; "
                f"it has: {_names(sorted(members)) or 'nothing'}"
            )
        return {k: _read_member(archive, members[k], f"{k} in {where}") for k in _KEYS
                if k in members}


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, what: str) -> np.ndarray:
    if info.flag_bits & 0x1:
        raise CnnkitError(f"cannot read {what}: it is encrypted; save it with np.savez")
    if info.compress_type not in _METHODS:
        raise CnnkitError(f"cannot read {what}: unknown zip compression method "
                          f"{info.compress_type}; save it with np.savez or np.savez_compressed")
    try:
        with archive.open(info) as f:
            shape, fortran, dtype = _read_npy_header(f)
            _check_dtype(dtype, what)
            if any(d < 0 for d in shape):
                raise ValueError(f"negative dimension in shape {shape}")
            if math.prod(max(d, 1) for d in shape) * dtype.itemsize > sys.maxsize:
                raise ValueError(f"shape {shape} is larger than any array")  # even with a 0
            count = math.prod(shape)
            data = _read_up_to(f, count * dtype.itemsize)
    except CnnkitError:
        raise
    except _DAMAGED as e:
        raise CnnkitError(f"cannot read {what}: {_one_line(e)}") from None
    if len(data) < count * dtype.itemsize:
        raise CnnkitError(f"cannot read {what}: truncated (shape {shape} needs "
                          f"{count * dtype.itemsize} bytes, the archive holds {len(data)})")
    # bytearray: a writable array, so torch.from_numpy takes it without a copy or a warning
    return np.frombuffer(data, dtype, count).reshape(shape, order="F" if fortran else "C")


def _read_npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")


def _check_dtype(dtype: np.dtype, what: str) -> None:
    """Numbers (and strings, for class names): never objects, which only unpickling reads."""
    if dtype.hasobject:
        raise CnnkitError(f"{what} is an object array; save it with np.array(..., dtype=str) "
                          "(or a number dtype)")
    kinds = "biufSU" if what.startswith("class_names") else "biuf"
    if dtype.kind not in kinds or dtype.itemsize == 0 or dtype.subdtype is not None:
        valid = "numbers or strings" if "S" in kinds else "real numbers"
        raise CnnkitError(f"{what} has dtype {dtype}; expected {valid}")


def _read_up_to(f, size: int) -> bytearray:
    """At most `size` bytes of `f`, in chunks: a lying size costs nothing."""
    data = bytearray()
    while len(data) < size:
        chunk = f.read(min(_CHUNK, size - len(data)))
        if not chunk:
            break
        data += chunk
    return data


def _names(names: list[str], shown: int = 10) -> str:
    """Member names for a message: a name from a damaged archive may hold a newline, or be
    a kilobyte long."""
    out = [n if n.isprintable() and len(n) <= 40 else repr(n[:40]) for n in names[:shown]]
    return ", ".join(out) + (f", ... ({len(names) - shown} more)" if len(names) > shown else "")


def _one_line(e: Exception) -> str:
    if isinstance(e, (SyntaxError, tokenize.TokenError)):  # from parsing the header's dict
        return "corrupt .npy header"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


CACHE_FORMAT = "cnnkit-npz-1"
_ROWS = 4096  # images converted and written per step


def _cache_path(path: Path, channels, size) -> Path:
    import hashlib

    from cnnkit.data.mnist import cache_dir

    st = path.stat()
    key = f"{CACHE_FORMAT}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{channels}|{size}"
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return Path(cache_dir()) / "npz" / f"{digest}.safetensors"


def _fits(tensors: dict) -> tuple[dict, list[str]] | None:
    """(tensors, class names) of a complete cache that fits this reader, else None."""
    from cnnkit.data.mapped import pop_json, splits_fit

    names = pop_json(tensors, "class_names")
    splits = ["train"] + (["test"] if "x_test" in tensors else [])
    if (not isinstance(names, list) or len(names) < 2 or not all(isinstance(c, str) for c in names)
            or not splits_fit(tensors, splits, len(names))):
        return None
    return tensors, names


def _fill(w, checked: tuple[dict, dict, list[str]], channels, size) -> None:
    """Write the checked archive's images (converted a chunk at a time), labels and class
    names into `w` (a CacheWriter or MemorySink)."""
    import json

    from cnnkit.data import convert_images

    xs, ys, names = checked
    for s, x in xs.items():
        for i in range(0, len(x), _ROWS):
            rows = convert_images(torch.from_numpy(np.ascontiguousarray(x[i:i + _ROWS])),
                                  channels, size).numpy()
            if i == 0:
                w.begin(f"x_{s}", "U8", rows.shape[1:])
            w.write(rows)
    for s, y in ys.items():
        w.add(f"y_{s}", y)
    w.add("class_names", np.frombuffer(json.dumps(names).encode(), np.uint8))


def load_npz(path: str | os.PathLike, channels: int | None = None, size=None) -> Dataset:
    """Load `npz:PATH` as a Dataset, its images converted to `channels` and `size` and
    memory-mapped from cnnkit's cache (see the module's note)."""
    from cnnkit.data.images import check_channels, check_size
    from cnnkit.data.mapped import build_or_map

    channels, size = check_channels(channels), check_size(size)
    path = readable_file(Path(path).expanduser(), "npz file")  # a FIFO would block the read
    cache = _cache_path(path, channels, size)
    checked = functools.cache(lambda: _checked_arrays(path))  # read once, even if filled twice
    (tensors, names), _ = build_or_map(cache, {"format": CACHE_FORMAT, "source": str(path)},
                                       lambda w: _fill(w, checked(), channels, size), _fits)
    return Dataset.from_splits(f"npz:{path}", names, tensors, str(path), {"cache": str(cache)})


def _checked_arrays(path: Path) -> tuple[dict, dict, list[str]]:
    """The archive's images (uint8) and labels (int64) by split, and its class names, checked."""
    where = f"'{path}'"
    arrays = _read_arrays(path, where)
    splits = ["train"] + (["test"] if "x_test" in arrays else [])
    xs = {s: _images(arrays[f"x_{s}"], f"x_{s}", where) for s in splits}
    if "test" in xs and xs["test"].shape[1:] != xs["train"].shape[1:]:
        raise CnnkitError(
            f"x_test in {where} has image shape {xs['test'].shape[1:]} but x_train has "
            f"{xs['train'].shape[1:]}"
        )
    # One scale for both splits, decided by the training images: floats up to 1 mean [0, 1].
    x_tr = xs["train"]
    scale = 1.0
    if x_tr.dtype == np.bool_ or np.issubdtype(x_tr.dtype, np.floating):
        scale = 255.0 if float(x_tr.max()) <= 1.0 else 1.0
    xs = {s: _to_uint8(x, f"x_{s}", where, scale) for s, x in xs.items()}
    ys = {s: _labels(arrays[f"y_{s}"], f"y_{s}", where, len(xs[s])) for s in splits}

    top = max(int(y.max()) for y in ys.values())
    if "class_names" in arrays:
        names = _class_names(arrays["class_names"], where)
        for s, y in ys.items():
            if int(y.max()) >= len(names):
                raise CnnkitError(
                    f"y_{s} in {where} has label {int(y.max())} but class_names lists "
                    f"{len(names)} classes (labels 0..{len(names) - 1})"
                )
    else:
        names = [str(i) for i in range(top + 1)]
    if len(names) < 2:
        raise CnnkitError(f"{where} has a single class; a classifier needs at least 2")
    return xs, ys, names
