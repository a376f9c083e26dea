"""What the table sources (`csv:`, `parquet:`, `hf:`) share: rows of pixels as images, a
label column as class indices and names, and the one cache every decoded source goes through.

A table's images are checked and decoded once, then written with npz's writer into cnnkit's
memory-mapped cache (cnnkit.data.mapped), keyed by the file's path, size and mtime and the
requested conversion: a second load maps one file and reads no table.
"""
from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path

import numpy as np

from cnnkit.data.base import Dataset
from cnnkit.errors import CnnkitError, clipped, printable

MAX_CLASSES = 65_536  # as npz: a stray huge label must not become that many class names


def square_images(pixels: np.ndarray, where: str) -> np.ndarray:
    """uint8 (N, P) rows → (N, S, S, C): P = S*S (gray) or S*S*3 (RGB, interleaved r,g,b per
    pixel, row by row); any other count is an error naming it."""
    n, p = pixels.shape
    for c in (1, 3):
        side = math.isqrt(p // c)
        if p % c == 0 and side * side * c == p and side > 0:
            return pixels.reshape(n, side, side, c)
    near = max(math.isqrt(p), 1)
    raise CnnkitError(f"{where} has {p:,} pixel columns, which is not a square image; valid: "
                      f"S*S gray pixels (such as {near}x{near} = {near * near:,}) or S*S*3 RGB "
                      "ones")


def _as_index(text: str) -> int | None:
    t = text.strip()
    return int(t) if t.isdecimal() and t.isascii() else None


def label_indices(values, where: str, line_of=lambda i: f"line {i + 2}",
                  names: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """(int64 labels, class names) from a label column's texts (or int64 labels already
    parsed, to check and name): all integers (class indices
    0..max, names "0".."max") or all names (sorted, as folders are); with `names` (a
    ClassLabel's), integers index them and names must be among them. Anything else (an
    empty cell, 2.5, -1, numbers mixed with names) is an error naming where it is (`line_of`)."""
    if len(values) == 0:
        raise CnnkitError(f"{where} holds no rows")
    ints = None if isinstance(values, np.ndarray) else [_as_index(v) for v in values]
    if ints is None or all(i is not None for i in ints):
        y = values if ints is None else np.array(ints, dtype=np.int64)
        top = int(y.max())
        if names is not None and top >= len(names):
            i = int(np.argmax(y))
            raise CnnkitError(f"{where} {line_of(i)}: label {top} but the dataset names "
                              f"{len(names)} classes (labels 0..{len(names) - 1})")
        if top >= MAX_CLASSES:
            raise CnnkitError(f"{where} {line_of(int(np.argmax(y)))}: label {top}; valid: "
                              f"class indices 0..{MAX_CLASSES - 1}")
        return y, names or [str(i) for i in range(top + 1)]
    mostly_ints = 2 * sum(k is not None for k in ints) >= len(ints)
    for i, (v, k) in enumerate(zip(values, ints)):
        t = v.strip()
        if not t or (k is None if mostly_ints else (k is not None or _is_number(t))):
            kind = "an empty label" if not t else f"label {clipped(t)}"
            raise CnnkitError(f"{where} {line_of(i)}: {kind} is neither a class index (an "
                              "integer >= 0) nor a class name; valid: every label one or the "
                              f"other (here most are {'integers' if mostly_ints else 'names'})")
    classes = names or sorted({printable(v.strip()) for v in values})
    index = {c: k for k, c in enumerate(classes)}
    missing = next((i for i, v in enumerate(values) if printable(v.strip()) not in index), None)
    if missing is not None:
        raise CnnkitError(f"{where} {line_of(missing)}: label {clipped(values[missing])} is "
                          f"not one of the dataset's classes ({', '.join(classes[:10])}...)")
    return np.array([index[printable(v.strip())] for v in values], np.int64), classes


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_classes(names: list[str], where: str) -> None:
    if len(names) < 2:
        raise CnnkitError(f"{where} has a single class ({names[0]!r}); a classifier needs at "
                          "least 2")


def cache_path(kind: str, path: Path, *parts) -> Path:
    """The cache file of table `path` read with `parts` (channels, size, column names)."""
    from cnnkit.data.mnist import cache_dir

    st = path.stat()
    key = "|".join(map(str, (kind, path.resolve(), st.st_size, st.st_mtime_ns, *parts)))
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return Path(cache_dir()) / "tables" / f"{digest}.safetensors"


def cached_dataset(name: str, fmt: str, cache: Path, source: str, read, channels, size) -> Dataset:
    """The Dataset of `read()` = ({split: uint8 (N, H, W, C)}, {split: int64 (N,)}, class
    names), decoded once into `cache` (format `fmt`) and mapped; `read` runs only when the
    cache is missing or stale, and an error in it leaves no cache file behind."""
    from cnnkit.data.mapped import build_or_map
    from cnnkit.data.npz import _fill, _fits  # npz's writer and check: one cache layout

    once = functools.cache(read)  # decoded once, even where the cache cannot be written
    (tensors, names), _ = build_or_map(cache, {"format": fmt, "source": source},
                                       lambda w: _fill(w, once(), channels, size), _fits)
    return Dataset.from_splits(name, names, tensors, source, {"cache": str(cache)})
