"""Decoded datasets as memory-mapped safetensors files: written as a stream, read without loading.

A folder or npz dataset is decoded once into one file in cnnkit's cache. That file is an
ordinary safetensors file (any safetensors reader opens it), but cnnkit maps its uint8 image
tensors instead of reading them: `ds.x_train` is a read-only view of the page cache, so a set
larger than memory trains, and several processes (the ranks of a distributed run) opening the
same dataset share one copy of it.

Writing streams too: `CacheWriter` reserves the header, appends each tensor chunk by chunk as
it is decoded, then writes the header with the final shapes and the CRC-32 of the data. It
writes a temporary file renamed onto the cache only when complete, so a crash mid-decode
leaves nothing that a later load trusts. `read_cache` checks the layout, the size and the
CRC-32 (read through a small buffer, not the mapping) and returns None for anything else.

Pages a process has read stay counted in its resident memory although the kernel can drop
them at any time. `touched(x)` is called after each gather (a batch, an evaluation chunk);
once this process's file-backed resident memory has grown by `RELEASE_BYTES` since the last
release, it unmaps what was read (MADV_DONTNEED on a shared, read-only file mapping only
drops this process's page-table entries; the page cache keeps the data for the next read and
for the other ranks), so resident memory stays the process's own working memory. It watches
the resident size itself (/proc/self/statm), not the bytes gathered: the kernel maps whole
page-cache folios (up to 2 MiB) on a fault, so a batch of small images scattered over the
file maps far more than its own bytes.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import sys
import warnings
import weakref
import zlib
from pathlib import Path

import numpy as np
import torch

from cnnkit.fsutil import atomic_path

RELEASE_BYTES = 64 << 20  # growth of this process's mapped pages between two releases
_PAGE = mmap.PAGESIZE
_READ_CHUNK = 16 << 20  # bytes per read while checking the CRC-32
_DTYPES = {"U8": np.dtype(np.uint8), "I64": np.dtype("<i8")}
_HEADER_SLACK = 2048  # room for up to ~8 tensors' shapes and offsets at 20 digits each

# storage address -> [weak reference to its mmap, bytes read since the last release]
_MAPS: dict[int, list] = {}
_since = {"shared": None}  # file-backed resident bytes right after the last release


class CacheWriter:
    """Stream tensors into `path` (a safetensors file), renamed onto it only when complete.

        with CacheWriter(path, {"format": ...}) as w:
            w.begin("x_train", "U8", (28, 28, 1))
            for chunk in chunks: w.write(chunk)      # (n, 28, 28, 1) uint8
            w.add("y_train", labels)                 # a whole (small) array
        # an exception anywhere: the temporary file is removed, `path` is untouched
    """

    def __init__(self, path, metadata: dict[str, str]):
        self.path, self.metadata = Path(path), dict(metadata)
        self.entries: dict[str, dict] = {}
        self.offset, self.crc, self._open_name = 0, 0, None

    def __enter__(self) -> "CacheWriter":
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        try:
            self.file = open(tmp, "wb")
            self.reserved = _round8(len(self._header_json(self.metadata, "ffffffff", {}))
                                    + _HEADER_SLACK)
            self.file.write(b"\0" * (8 + self.reserved))  # the header, written at the end
        except BaseException:
            self._atomic.__exit__(*_exc_info())
            raise
        return self

    def begin(self, name: str, dtype: str, row_shape) -> None:
        """Start tensor `name` of rows `row_shape`; `write` appends rows until the next call."""
        self.entries[name] = {"dtype": dtype, "shape": [0, *map(int, row_shape)],
                              "data_offsets": [self.offset, self.offset]}
        self._open_name = name

    def write(self, rows: np.ndarray) -> None:
        entry = self.entries[self._open_name]
        rows = np.ascontiguousarray(rows, dtype=_DTYPES[entry["dtype"]])
        assert list(rows.shape[1:]) == entry["shape"][1:], (rows.shape, entry["shape"])
        data = memoryview(rows.reshape(-1).view(np.uint8))
        self.file.write(data)
        self.crc = zlib.crc32(data, self.crc)
        self.offset += len(data)
        entry["shape"][0] += len(rows)
        entry["data_offsets"][1] = self.offset

    def add(self, name: str, array: np.ndarray, dtype: str | None = None) -> None:
        """Tensor `name` holding all of `array` (labels, small tables)."""
        array = np.asarray(array)
        dtype = dtype or ("U8" if array.dtype == np.uint8 else "I64")
        self.begin(name, dtype, array.shape[1:])
        self.write(array)

    def _header_json(self, metadata, crc, entries) -> bytes:
        return json.dumps({"__metadata__": {**metadata, "crc32": crc}, **entries},
                          separators=(",", ":")).encode()

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:
                header = self._header_json(self.metadata, f"{self.crc:08x}", self.entries)
                assert len(header) <= self.reserved, (len(header), self.reserved)
                self.file.seek(0)
                self.file.write(self.reserved.to_bytes(8, "little"))
                self.file.write(header.ljust(self.reserved, b" "))  # safetensors pads with spaces
            self.file.close()
        except BaseException:
            self._atomic.__exit__(*_exc_info())
            raise
        self._atomic.__exit__(*exc)  # renames onto `path`, or removes the temporary file


def _exc_info():
    return sys.exc_info()


def _round8(n: int) -> int:
    return -(-n // 8) * 8


def read_cache(path) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
    """(tensors, metadata) of a cache written by CacheWriter, or None when it is missing,
    damaged or of another layout: a cache is rebuilt, never trusted. 4-D uint8 tensors come
    back mapped (read-only); the rest are read into memory."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n <= min(size - 8, 1 << 24):
                return None
            header = json.loads(f.read(n))
            meta = header.pop("__metadata__")
            start = 8 + n
            entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
            offset = 0
            for name, e in entries:
                dtype, shape, (begin, end) = _DTYPES[e["dtype"]], e["shape"], e["data_offsets"]
                if not (isinstance(name, str) and begin == offset and all(
                        isinstance(d, int) and d >= 0 for d in shape)
                        and end - begin == int(np.prod(shape, dtype=object)) * dtype.itemsize):
                    return None
                offset = end
            if start + offset != size or not isinstance(meta, dict) \
                    or meta.get("crc32") != _file_crc(f, start, offset):
                return None
            tensors = {}
            for name, e in entries:
                begin, shape = start + e["data_offsets"][0], tuple(e["shape"])
                if e["dtype"] == "U8" and len(shape) == 4 and 0 not in shape:
                    tensors[name] = _map(path, begin, shape)
                else:
                    f.seek(begin)
                    count = int(np.prod(shape, dtype=np.int64))
                    a = np.fromfile(f, _DTYPES[e["dtype"]], count).reshape(shape)
                    tensors[name] = torch.from_numpy(a.astype(a.dtype.newbyteorder("=")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError,
            OverflowError, MemoryError):
        return None
    return tensors, meta


def _file_crc(f, start: int, length: int) -> str:
    """CRC-32 of `length` bytes from `start`, read through one reused buffer: checking a
    cache larger than memory neither maps it nor holds it."""
    f.seek(start)
    buf, crc, left = bytearray(min(_READ_CHUNK, max(length, 1))), 0, length
    view = memoryview(buf)
    while left:
        got = f.readinto(view[:min(len(buf), left)])
        if not got:
            break
        crc, left = zlib.crc32(view[:got], crc), left - got
    return f"{crc:08x}" if not left else "truncated"


class MemorySink:
    """CacheWriter's interface, kept in memory: where the cache cannot be written."""

    def __init__(self):
        self.parts: dict[str, list[np.ndarray]] = {}

    def begin(self, name: str, dtype: str, row_shape) -> None:
        self.name, self.parts[name] = name, [np.empty((0, *row_shape), _DTYPES[dtype])]

    def write(self, rows: np.ndarray) -> None:
        self.parts[self.name].append(rows.copy())  # `rows` may be the decoder's reused buffer

    def add(self, name: str, array: np.ndarray) -> None:
        self.parts[name] = [np.asarray(array)]

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.concatenate(v)) for k, v in self.parts.items()}


def build_or_map(path: Path, metadata: dict[str, str], fill, check):
    """A decoded dataset, decoded once: `check(tensors)` of the cache at `path` when its
    metadata's "format" is metadata["format"] (check's None: it does not fit). When none fits,
    `fill(writer)` decodes into it, then it is mapped; where the cache cannot be written,
    `fill` decodes into a MemorySink instead.
    Returns (what check returned, whether the cache was there before)."""
    hit = _checked(path, metadata["format"], check)
    if hit is not None:
        return hit, True
    with _building(path.parent):
        hit = _checked(path, metadata["format"], check)  # decoded while we waited?
        if hit is None and _write(path, metadata, fill):
            hit = _checked(path, metadata["format"], check)
    if hit is None:
        sink = MemorySink()
        fill(sink)
        hit = check(sink.tensors())
    return hit, False


def _checked(path: Path, fmt: str, check):
    hit = read_cache(path)
    return None if hit is None or hit[1].get("format") != fmt else check(hit[0])


def _write(path: Path, metadata: dict[str, str], fill) -> bool:
    """Decode into the cache file; False when it cannot be written."""
    try:
        with CacheWriter(path, metadata) as w:
            fill(w)
    except OSError as e:  # a read-only or full cache costs memory and speed, not this load
        print(f"cnnkit: warning: could not write cache '{path}': {e}", file=sys.stderr)
        return False
    return True


@contextlib.contextmanager
def _building(folder: Path):
    """Hold the cache folder's lock while decoding: the ranks of a distributed run that all
    open the same dataset decode it once; the others wait, then map what it wrote. Without a
    lockable folder (read-only, no fcntl) each process just decodes for itself."""
    try:
        import fcntl

        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def pop_json(tensors: dict, name: str):
    """The JSON value stored as UTF-8 bytes under `name`, taken out of `tensors`; None when
    it is missing or damaged."""
    try:
        return json.loads(bytes(tensors.pop(name).numpy()).decode("utf-8", "surrogateescape"))
    except (KeyError, ValueError, RecursionError, UnicodeDecodeError):
        return None


def splits_fit(tensors: dict, splits, n_classes: int) -> bool:
    """Exactly x_<split> and y_<split> for each split: uint8 images (N > 0) of one shape and
    int64 labels (N,) in 0..n_classes-1."""
    if set(tensors) != {f"{xy}_{s}" for xy in "xy" for s in splits}:
        return False
    shape = tensors["x_train"].shape[1:]
    for s in splits:
        x, y = tensors[f"x_{s}"], tensors[f"y_{s}"]
        if (x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1:] != shape or len(x) == 0
                or y.dtype != torch.int64 or y.shape != (len(x),)
                or not 0 <= int(y.min()) <= int(y.max()) < n_classes):
            return False
    return True


def _map(path, offset: int, shape: tuple) -> torch.Tensor:
    """A read-only uint8 tensor over `shape` bytes of `path` from `offset`, shared with every
    process that maps the same file (MAP_SHARED, PROT_READ)."""
    array = np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=shape)
    with warnings.catch_warnings():  # "not writable": read-only on purpose, see is_mapped
        warnings.simplefilter("ignore", UserWarning)
        x = torch.from_numpy(array)  # keeps `array`, and with it the mapping, alive
    _MAPS[x.untyped_storage().data_ptr()] = [weakref.ref(array._mmap), 0]
    _forget_dead()
    return x


def _forget_dead() -> None:
    for key in [k for k, (ref, _) in _MAPS.items() if ref() is None]:
        del _MAPS[key]


def is_mapped(x) -> bool:
    """True for a tensor (or a view of one) that `read_cache` mapped: writing into it would
    fault, and it should be gathered batch by batch, never copied whole."""
    if not isinstance(x, torch.Tensor) or x.device.type != "cpu":
        return False
    entry = _MAPS.get(x.untyped_storage().data_ptr())
    return entry is not None and entry[0]() is not None


def _shared_bytes() -> int | None:
    """This process's file-backed (and shared) resident bytes, or None off Linux."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[2]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def touched(x: torch.Tensor, nbytes: int) -> None:
    """Note that `nbytes` of mapped `x` were just read; once this process's mapped pages
    have grown by RELEASE_BYTES, unmap its pages of `x` (the data stays in the page cache
    and is simply mapped again when read again)."""
    entry = _MAPS.get(x.untyped_storage().data_ptr())
    if entry is None:
        return
    shared = _shared_bytes()
    if shared is None:  # no /proc: count the bytes read, with the kernel's folio mapping in mind
        entry[1] += max(nbytes, 2 << 20)
        due = entry[1] >= RELEASE_BYTES
    else:
        if _since["shared"] is None:
            _since["shared"] = shared
        due = shared - _since["shared"] >= RELEASE_BYTES
    if due:
        entry[1] = 0
        mm = entry[0]()
        if mm is not None:
            with contextlib.suppress(OSError, ValueError):
                mm.madvise(mmap.MADV_DONTNEED)
        _since["shared"] = _shared_bytes()


CONVERTED_FORMAT = "cnnkit-converted-1"
_CONVERT_ROWS = 4096  # images converted and written per step


def map_converted(ds, channels: int | None, size):
    """`ds` (held in memory: the MNIST family, digits) with its images converted to `channels`
    and `size`, written once into a cache file per (images, channels, size) and mapped.

    Why once and mapped, not per batch: 70,000 Fashion-MNIST images at 160x160x3 are 5 GiB,
    too much to hold in memory, and a short training at that size runs as fast from images
    resized once as with each batch resized on the fly (450 against 469 images/s on 2 cores,
    within the noise of the rounds: bench/README.md), while every other reader of the images
    (evaluation, reports, folds, trials, the next run) gets them converted for nothing and the
    conversion is not repeated every epoch. Mapped, they cost page cache and disk, not the
    process's memory, as a folder's do. Keyed by a CRC-32 of the images and labels, so the
    same pixels find the same cache."""
    from cnnkit.data import convert_images
    from cnnkit.data.base import Dataset
    from cnnkit.data.mnist import cache_dir

    splits = {s: (x, y) for s, x, y in (("train", ds.x_train, ds.y_train),
                                        ("test", ds.x_test, ds.y_test),
                                        ("validation", ds.x_val, ds.y_val)) if x is not None}
    key = hashlib.sha256(f"{CONVERTED_FORMAT}|{channels}|{size}".encode())
    for s, (x, y) in splits.items():
        crc = zlib.crc32(np.ascontiguousarray(y.numpy()), zlib.crc32(np.ascontiguousarray(x.numpy())))
        key.update(f"|{s}|{tuple(x.shape)}|{crc:08x}".encode())
    path = Path(cache_dir()) / "converted" / f"{key.hexdigest()[:32]}.safetensors"

    def fill(w) -> None:
        for s, (x, _) in splits.items():
            for i in range(0, len(x), _CONVERT_ROWS):
                rows = convert_images(x[i:i + _CONVERT_ROWS], channels, size).numpy()
                if i == 0:
                    w.begin(f"x_{s}", "U8", rows.shape[1:])
                w.write(rows)
        for s, (_, y) in splits.items():
            w.add(f"y_{s}", y.numpy())

    tensors, _ = build_or_map(path, {"format": CONVERTED_FORMAT, "source": ds.name}, fill,
                              lambda t: t if splits_fit(t, splits, ds.num_classes) else None)
    return Dataset.from_splits(ds.name, ds.class_names, tensors, ds.source,
                               {**ds.info, "cache": str(path)})


def data_crc(ds) -> str:
    """'crc32:1a2b3c4d': a fingerprint of a dataset's decoded images and labels, as a run
    records it (config.json). A dataset mapped from cnnkit's cache gives the CRC-32 its cache
    header holds, which read_cache checked when it mapped the file: nothing is read twice. A
    dataset held in memory (the MNIST family, digits) is hashed here, split by split."""
    cache = ds.info.get("cache")
    if cache:
        try:
            with open(cache, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                meta = json.loads(f.read(n)).get("__metadata__", {}) if 0 < n <= 1 << 24 else {}
            if isinstance(meta.get("crc32"), str):
                return f"crc32:{meta['crc32']}"
        except (OSError, ValueError, AttributeError):
            pass  # a cache that could not be written (MemorySink): hashed below
    crc = 0
    for t in (ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.x_val, ds.y_val):
        if t is not None:
            crc = zlib.crc32(np.ascontiguousarray(t.numpy()), crc)
    return f"crc32:{crc:08x}"
