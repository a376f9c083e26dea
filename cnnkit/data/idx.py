"""IDX files (the MNIST family's format), gzipped or not: read, check, write.

An IDX file is a 4-byte magic number `00 00 TYPE NDIM`, NDIM big-endian uint32 dimensions, then
the values, row-major and big-endian. A whole file is decompressed in one call and viewed with
`np.frombuffer`, so 60,000 images decode in C, with no per-image Python.

Every problem a user's file can have (truncated or corrupt gzip, wrong magic number, a size that
disagrees with the header, images and labels that differ in count) is one CnnkitError line that
names the file.
"""
from __future__ import annotations

import gzip
import io
import math
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnkit.errors import CnnkitError
from cnnkit.fsutil import atomic_write_bytes

# IDX type byte -> numpy dtype (big-endian, as the format stores it).
_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_TYPE_OF = {dt.newbyteorder("="): t for t, dt in _DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_HEADER = 4 + 4 * 4
# Deflate expands at most ~1032x, so a header promising more than this many bytes per compressed
# byte is a lie we can name without decompressing (and without a gzip bomb filling memory).
_MAX_GZIP_RATIO = 1100
_CHUNK = 1 << 20  # GzipFile.read(n) allocates all n bytes before it learns how many come


@dataclass(frozen=True)
class IdxHeader:
    """What the first bytes of an IDX file promise: value type and dimensions."""

    dtype: np.dtype
    dims: tuple[int, ...]

    @property
    def count(self) -> int:
        """Number of items (images or labels): the first dimension."""
        return self.dims[0] if self.dims else 0

    @property
    def header_bytes(self) -> int:
        return 4 + 4 * len(self.dims)

    @property
    def data_bytes(self) -> int:
        # Python ints: four dims of 65536 wrap an int64 product to 0, which "matched" 0 bytes
        return math.prod(self.dims) * self.dtype.itemsize

    def describe(self) -> str:
        return f"{'x'.join(map(str, self.dims))} values ({self.data_bytes} bytes)"


def _raw_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it is a gzip file (detected by content, not name); of a
    gzip file, no more than its header promises and one byte (to tell that more follows)."""
    try:
        if path.exists() and not path.is_file():  # a folder, a FIFO, /dev/zero: never read
            raise CnnkitError(f"{path}: not a regular file")
        data = path.read_bytes()
    except FileNotFoundError:
        raise CnnkitError(f"{path}: file not found") from None
    except OSError as e:
        raise CnnkitError(f"{path}: cannot read ({e.strerror or e})") from None
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            head = f.read(_MAX_HEADER)
            try:
                header = _parse_header(path, head)
            except CnnkitError:
                _drain(f)  # a damaged gzip stream explains a bad header better, where it is one
                raise
            if header.data_bytes > _MAX_GZIP_RATIO * len(data):
                raise CnnkitError(f"{path}: truncated IDX file: header promises "
                                  f"{header.describe()}, more than a {len(data)}-byte gzip "
                                  f"file can hold")
            want = header.header_bytes + header.data_bytes + 1
            chunks, have = [head], len(head)
            while have < want and (chunk := f.read(min(_CHUNK, want - have))):
                chunks.append(chunk)
                have += len(chunk)
            _drain(f)
    except EOFError:
        raise CnnkitError(f"{path}: truncated gzip file (it ends before the compressed data "
                          f"does); download it again") from None
    except (gzip.BadGzipFile, zlib.error, OSError) as e:
        raise CnnkitError(f"{path}: corrupt gzip file ({e}); download it again") from None
    return b"".join(chunks)


def _drain(f) -> None:
    """Decompress the rest, keeping nothing: only so that gzip checks its CRC and length."""
    while f.read(_CHUNK):
        pass


def _parse_header(path: Path, head: bytes) -> IdxHeader:
    if len(head) < 4:
        raise CnnkitError(f"{path}: not an IDX file (only {len(head)} bytes)")
    zero, type_code, ndim = struct.unpack(">HBB", head[:4])
    magic = int.from_bytes(head[:4], "big")
    if zero != 0 or type_code not in _DTYPES or not 1 <= ndim <= 4:
        raise CnnkitError(
            f"{path}: wrong magic number 0x{magic:08X}; an IDX file starts with "
            f"0x00000801 (labels) or 0x00000803 (images)")
    if len(head) < 4 + 4 * ndim:
        raise CnnkitError(f"{path}: truncated IDX header ({len(head)} bytes)")
    header = IdxHeader(_DTYPES[type_code], struct.unpack(f">{ndim}I", head[4:4 + 4 * ndim]))
    if math.prod(max(d, 1) for d in header.dims) * header.dtype.itemsize > sys.maxsize:
        # even with a 0 among them, numpy cannot shape an array by these
        raise CnnkitError(f"{path}: corrupt IDX header: dims {'x'.join(map(str, header.dims))} "
                          f"are larger than any array")
    return header


def read_idx_header(path: str | Path) -> IdxHeader:
    """Read only the header (cheap even for a 47 MB file): for listings and quick checks."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            gz = f.read(2) == _GZIP_MAGIC
        opener = gzip.open if gz else open
        with opener(path, "rb") as f:
            head = f.read(_MAX_HEADER)
    except FileNotFoundError:
        raise CnnkitError(f"{path}: file not found") from None
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
        raise CnnkitError(f"{path}: corrupt or truncated gzip file ({e})") from None
    return _parse_header(path, head)


def read_idx(path: str | Path) -> np.ndarray:
    """The whole array, shaped by the header's dims, in native byte order (a writable copy
    only when the byte order had to change; uint8 data is a zero-copy view)."""
    path = Path(path)
    data = _raw_bytes(path)
    header = _parse_header(path, data[:_MAX_HEADER])
    have = len(data) - header.header_bytes
    if have < header.data_bytes:
        raise CnnkitError(f"{path}: truncated IDX file: header promises {header.describe()} but "
                          f"the file holds {have} bytes of data")
    if have > header.data_bytes:  # of a gzip file, only one byte past the promise was read
        raise CnnkitError(f"{path}: corrupt IDX file: header promises {header.describe()} but "
                          f"more data follows them")
    arr = np.frombuffer(data, dtype=header.dtype, count=header.data_bytes // header.dtype.itemsize,
                        offset=header.header_bytes).reshape(header.dims)
    if header.dtype.byteorder == ">":
        arr = arr.astype(header.dtype.newbyteorder("="))
    return arr


def read_images_labels(images_path: str | Path, labels_path: str | Path
                       ) -> tuple[np.ndarray, np.ndarray]:
    """One split: images (N, H, W) uint8 and labels (N,) uint8, checked to agree in count."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8 or 0 in images.shape[1:]:
        raise CnnkitError(f"{images_path}: expected uint8 images (N, H, W), found "
                          f"{images.dtype} with shape {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise CnnkitError(f"{labels_path}: expected uint8 labels (N,), found "
                          f"{labels.dtype} with shape {labels.shape}")
    if len(images) != len(labels):
        raise CnnkitError(
            f"image/label count mismatch: {Path(images_path).name} has {len(images)} images but "
            f"{Path(labels_path).name} has {len(labels)} labels")
    return images, labels


def encode_idx(arr: np.ndarray) -> bytes:
    """The IDX bytes of an array (uncompressed)."""
    arr = np.asarray(arr)
    native = arr.dtype.newbyteorder("=")
    if native not in _TYPE_OF:
        raise CnnkitError(f"cannot store dtype {arr.dtype} in an IDX file; valid: "
                          "uint8, int8, int16, int32, float32, float64")
    if not 1 <= arr.ndim <= 4:
        raise CnnkitError(f"cannot store a {arr.ndim}-D array in an IDX file; valid: 1 to 4 dims")
    header = struct.pack(f">HBB{arr.ndim}I", 0, _TYPE_OF[native], arr.ndim, *arr.shape)
    big = arr.astype(native.newbyteorder(">"), copy=False) if native.itemsize > 1 else arr
    return header + np.ascontiguousarray(big).tobytes()


def write_idx(path: str | Path, arr: np.ndarray, compress: bool | None = None) -> Path:
    """Write `arr` as an IDX file, atomically; gzipped when `compress` (default: name ends .gz)."""
    path = Path(path)
    data = encode_idx(arr)
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=6, mtime=0)
    return atomic_write_bytes(path, data)
