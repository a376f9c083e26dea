"""`csv:PATH` — a table of images, in either of the two forms people keep them:

    label,pixel0,...,pixel783      Kaggle's pixel rows: one image per row, the side inferred
                                   (S*S gray columns, or S*S*3 RGB ones, r,g,b per pixel)
    file,label                     one image file per row, named relative to the table's folder
                                   (or `image_root`), decoded as a folder's images are

The label column is the one named `label` (or `label_column`); labels are class indices
(0, 1, ...) or class names (sorted into indices, as folders are). A pixel table without a
label column is a set to predict (`cnnkit predict RUN test.csv --submission out.csv`).

Pixel rows are parsed by numpy's C reader (np.loadtxt straight to uint8) after one pass of
bytes that counts each line's fields, so a ragged row is named by its line number; the decoded
images go through the same memory-mapped cache as every other source (cnnkit.data.tables).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from cnnkit.data.base import Dataset
from cnnkit.data.tables import (cache_path, cached_dataset, check_classes, label_indices,
                                 square_images)
from cnnkit.errors import CnnkitError, clipped, printable
from cnnkit.fsutil import readable_file

CACHE_FORMAT = "cnnkit-csv-1"
FILE_COLUMNS = ("file", "filename", "path")  # a table of image files, not of pixels
_MAX_HEADER = 1 << 20  # bytes: a header line is column names, never megabytes


def _open(path) -> tuple[Path, str]:
    path = readable_file(Path(path).expanduser(), "CSV file")
    return path, f"CSV file '{printable(str(path))}'"


def header(path: Path, where: str) -> list[str]:
    """The column names of the first line (a UTF-8 byte-order mark dropped, quotes removed)."""
    with open(path, "rb") as f:
        first = f.readline(_MAX_HEADER)
    if not first.strip():
        raise CnnkitError(f"{where} is empty; expected a header line such as label,pixel0,...")
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CnnkitError(f"{where}: the header line is not UTF-8 text") from None
    return [c.strip() for c in next(csv.reader([text.rstrip("\r\n")]))]


def _column(columns: list[str], name: str | None, where: str, required: bool) -> int | None:
    """The index of the label column: `name`, else 'label'; None where there is none."""
    if name is not None and name not in columns:
        raise CnnkitError(f"{where} has no column {clipped(name)} (--label-column); its "
                          f"columns: {_listed(columns)}")
    want = name or "label"
    if want in columns:
        return columns.index(want)
    if required:
        raise CnnkitError(f"{where} has no label column 'label'; its columns: "
                          f"{_listed(columns)}; name the label column with --label-column")
    return None


def _listed(columns: list[str], shown: int = 6) -> str:
    out = ", ".join(clipped(c, quote=False) for c in columns[:shown])
    return out + (f", ... ({len(columns) - shown} more)" if len(columns) > shown else "")


def _scan(path: Path, ncols: int, label: int | None, where: str) -> list[str]:
    """One pass over the rows as bytes: every non-blank line has `ncols` fields (else the line
    is named), and the label column's texts."""
    labels, cut = [], (lambda line: line.split(b",", 1)[0]) if label == 0 else \
        (lambda line: line.split(b",")[label])
    with open(path, "rb") as f:
        f.readline(_MAX_HEADER)
        for number, line in enumerate(f, 2):
            if not line.strip():
                continue
            if line.count(b",") != ncols - 1:
                raise CnnkitError(f"{where} line {number} has {line.count(b',') + 1:,} fields; "
                                  f"the header has {ncols:,}")
            if label is not None:
                labels.append(cut(line).strip().strip(b'"').decode("utf-8", "replace"))
    return labels


def _pixels(path: Path, columns: list[str], keep: list[int], where: str) -> np.ndarray:
    """uint8 (N, len(keep)) of the pixel columns, by numpy's C parser; a value that is not an
    integer in 0..255 is named with its line and column."""
    try:
        with warnings.catch_warnings():  # "input contained no data": said in one line later
            warnings.simplefilter("ignore", UserWarning)
            return np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.uint8, usecols=keep,
                              comments=None, ndmin=2, encoding="utf-8")
    except ValueError:
        pass
    with open(path, encoding="utf-8", errors="replace") as f:  # the slow way, to name the cell
        f.readline()
        for number, line in enumerate(f, 2):
            if not line.strip():
                continue  # blank lines are no rows, to numpy as to _scan
            fields = line.rstrip("\r\n").split(",")
            for i in keep:
                v = fields[i].strip()
                if not (v.isdecimal() and v.isascii() and int(v) <= 255):
                    raise CnnkitError(f"{where} line {number}, column {clipped(columns[i])}: "
                                      f"{clipped(v)} is not a pixel value; valid: integers 0..255")
    raise CnnkitError(f"{where} could not be read as rows of pixel values 0..255")


def pixel_table(path: Path, where: str, label_column: str | None, need_labels: bool):
    """(uint8 (N, S, S, C) images, the labels (integers, or texts) or None) of a pixel table.

    The common case (integer labels 0..255, or none) is one call of numpy's C parser over
    every column, which also refuses a ragged row; anything else takes a second, slower way
    that names the line (and column) at fault, or reads labels that are class names."""
    columns = header(path, where)
    label = _column(columns, label_column, where, required=need_labels)
    keep = [i for i in range(len(columns)) if i != label]
    if not keep:
        raise CnnkitError(f"{where} has no pixel columns besides {clipped(columns[label])}")
    try:
        with warnings.catch_warnings():  # "input contained no data": said in one line below
            warnings.simplefilter("ignore", UserWarning)
            rows = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.uint8, comments=None,
                              ndmin=2, encoding="utf-8")  # (N, columns)
        if rows.shape[1] != len(columns):
            raise ValueError("the rows' fields differ from the header's")
        labels = None if label is None else rows[:, label].astype(np.int64)
        pixels = rows[:, keep] if label not in (0, None) else rows[:, 1:] if label == 0 else rows
    except ValueError:
        labels = _scan(path, len(columns), label, where)
        pixels = _pixels(path, columns, keep, where)
    if len(pixels) == 0:
        raise CnnkitError(f"{where} holds no rows of pixels")
    return square_images(np.ascontiguousarray(pixels), where), labels if label is not None else None


def csv_images(path) -> np.ndarray:
    """uint8 (N, S, S, C) images of a pixel table, in row order (a `label` column, if any, is
    left out): Kaggle's test.csv, for predict."""
    path, where = _open(path)
    return pixel_table(path, where, None, need_labels=False)[0]


def load_csv(path, channels: int | None = None, size=None, label_column: str | None = None,
             image_root=None) -> Dataset:
    """Load `csv:PATH` (see the module's note), converted to `channels` and `size`."""
    from cnnkit.data.images import check_channels, check_size

    channels, size = check_channels(channels), check_size(size)
    path, where = _open(path)
    columns = header(path, where)
    file_col = next((c for c in FILE_COLUMNS if c in columns), None)
    if file_col is None:
        if image_root is not None:
            raise CnnkitError(f"--image-root is for a table of image files (a column "
                              f"{', '.join(FILE_COLUMNS)}); {where} holds pixels")

        def read():
            x, texts = pixel_table(path, where, label_column, need_labels=True)
            y, names = label_indices(texts, where)
            check_classes(names, where)
            return {"train": x}, {"train": y}, names

        cache = cache_path(CACHE_FORMAT, path, channels, size, label_column)
        return cached_dataset(f"csv:{path}", CACHE_FORMAT, cache, str(path), read, channels, size)
    return _file_table(path, where, columns, columns.index(file_col), label_column, image_root,
                       channels, size)


def _file_table(path: Path, where: str, columns: list[str], fi: int, label_column, image_root,
                channels, size) -> Dataset:
    """A `file,label` table: each file decoded as a folder's images are (unreadable ones
    skipped and named), through folder's decoder and cache."""
    from cnnkit.data.folder import _build, _fits, _warn_skipped, cache_root
    from cnnkit.data.mapped import build_or_map

    li = _column(columns, label_column, where, required=True)
    root = Path(image_root).expanduser() if image_root is not None else path.parent
    if not root.is_dir():
        raise CnnkitError(f"image root '{printable(str(root))}' is not a folder (--image-root)")
    root = root.resolve()
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        rows = list(csv.reader(f))[1:]
    files, texts, lines = [], [], []
    for number, row in enumerate(rows, 2):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) != len(columns):
            raise CnnkitError(f"{where} line {number} has {len(row):,} fields; the header has "
                              f"{len(columns):,}")
        entry = row[fi].strip()
        full = os.path.normpath(os.path.join(root, entry))
        if not entry or os.path.commonpath([full, str(root)]) != str(root) or full == str(root):
            raise CnnkitError(f"{where} line {number}: file {clipped(entry)} is outside the image "
                              f"root '{printable(str(root))}'; valid: a path inside it")
        files.append(full)
        texts.append(row[li])
        lines.append(number)
    y, names = label_indices(texts, where, line_of=lambda i: f"line {lines[i]}")
    check_classes(names, where)
    listed = [(f, int(k), _stamp(f, root)) for f, k in zip(files, y)]
    scan = {"train": (root, names, listed)}
    key = hashlib.sha256(f"{CACHE_FORMAT}|{path.resolve()}|{root}|{channels}|{size}|"
                         f"{json.dumps(names)}\n".encode("utf-8", "surrogateescape"))
    key.update("\n".join(s for _, _, s in listed).encode("utf-8", "surrogateescape"))
    cache = cache_root() / f"{key.hexdigest()[:32]}.safetensors"
    (tensors, skipped), _ = build_or_map(
        cache, {"format": CACHE_FORMAT, "source": str(path)},
        lambda w: _build(root, scan, channels, size, w), lambda t: _fits(t, scan, len(names)))
    if skipped:
        _warn_skipped(root, skipped)
    return Dataset.from_splits(f"csv:{path}", names, tensors, str(path),
                               {"skipped": skipped, "cache": str(cache)})


def _stamp(file: str, root: Path) -> str:
    """'relative path|bytes|mtime' (or '|missing'), as folder stamps its files."""
    rel = os.path.relpath(file, root).replace(os.sep, "/")
    try:
        st = os.stat(file)
    except OSError:
        return f"{rel}|missing"
    return f"{rel}|{st.st_size}|{st.st_mtime_ns}"
