"""`parquet:PATH` and `hf:PATH` — images as Hugging Face ships them, read with pyarrow.

    parquet:train.parquet     one table: an image column and a label column
    hf:mnist_saved/           a folder written by `datasets`' save_to_disk: one Dataset
                              (data-*.arrow, dataset_info.json, state.json) or a DatasetDict
                              (dataset_dict.json and one such folder per split: train, test)

The image column is the `datasets` Image feature (a struct of encoded `bytes` and a `path`),
raw encoded bytes, or arrays (nested lists of numbers, (H, W) or (H, W, C)); a table without
one holds pixel columns, as Kaggle's CSV does. The label column is `label` (or
`label_column`); class names come from its ClassLabel feature when the file records one
(the `huggingface` schema metadata, or dataset_info.json), else from the labels themselves.
pyarrow is an optional dependency: `pip install cnnkit[parquet]`.
"""
from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import numpy as np

from cnnkit.data.base import Dataset
from cnnkit.data.tables import (cache_path, cached_dataset, check_classes, label_indices,
                                 square_images)
from cnnkit.errors import CnnkitError, clipped, printable
from cnnkit.fsutil import readable_file

CACHE_FORMAT = "cnnkit-parquet-1"
IMAGE_COLUMNS = ("image", "img", "pixel_values")  # where several columns could be the image


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.compute  # noqa: F401
        import pyarrow.ipc  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise CnnkitError("parquet: and hf: datasets need pyarrow; install it with "
                          "pip install 'cnnkit[parquet]' (or pip install pyarrow)") from None
    return pyarrow


def _features(table, info: dict | None) -> dict:
    """The `datasets` features recorded with the table (its schema metadata or the folder's
    dataset_info.json): {column: feature dict}."""
    if info is None:
        meta = (table.schema.metadata or {}).get(b"huggingface")
        try:
            info = json.loads(meta)["info"] if meta else {}
        except (ValueError, KeyError, TypeError):
            info = {}
    features = info.get("features") if isinstance(info, dict) else None
    return features if isinstance(features, dict) else {}


def _image_column(table, features: dict, label: str) -> str | None:
    pa = _pyarrow()
    named = [c for c, f in features.items() if isinstance(f, dict) and f.get("_type") == "Image"]
    if named and named[0] in table.column_names:
        return named[0]
    candidates = [f.name for f in table.schema if f.name != label and (
        pa.types.is_struct(f.type) or pa.types.is_binary(f.type)
        or pa.types.is_large_binary(f.type) or pa.types.is_list(f.type)
        or pa.types.is_large_list(f.type) or pa.types.is_fixed_size_list(f.type))]
    named = [c for c in IMAGE_COLUMNS if c in candidates]
    return (named or candidates or [None])[0]


def _decode_bytes(blobs: list, where: str, column: str) -> np.ndarray:
    """Encoded images (PNG, JPEG, ...) → uint8 (N, H, W, C): every image at the most common
    size, gray only if every one is (as a folder's)."""
    import torch

    from cnnkit.data import convert_images
    from cnnkit.data.images import DECODE_ERRORS, decode, pillow_open, upright

    decoded = []
    for i, blob in enumerate(blobs):
        if isinstance(blob, dict):
            blob = blob.get("bytes")
        if not blob:
            raise CnnkitError(f"{where} row {i}: column {clipped(column)} holds no image bytes")
        try:
            with pillow_open(io.BytesIO(blob)) as img:
                decoded.append(decode(upright(img)))
        except DECODE_ERRORS as e:
            raise CnnkitError(f"{where} row {i}: column {clipped(column)} is not a readable "
                              f"image ({type(e).__name__}: {e})") from None
    size = Counter(a.shape[:2] for a in decoded).most_common(1)[0][0]
    channels = 1 if all(a.shape[2] == 1 for a in decoded) else 3
    return np.stack([convert_images(torch.from_numpy(a)[None], channels, size)[0].numpy()
                     for a in decoded])


def _arrays(column, where: str, name: str) -> np.ndarray:
    """Nested lists of numbers, each row the same shape → (N, H, W[, C]) as numbers."""
    pa = _pyarrow()
    arr, dims = column.combine_chunks(), []
    while pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) \
            or pa.types.is_fixed_size_list(arr.type):
        lengths = np.unique(pa.compute.list_value_length(arr).to_numpy(zero_copy_only=False))
        if len(lengths) != 1:
            raise CnnkitError(f"{where}: the arrays in column {clipped(name)} differ in shape; "
                              "valid: every image the same (H, W) or (H, W, C)")
        dims.append(int(lengths[0]))
        arr = arr.flatten()
    values = arr.to_numpy(zero_copy_only=False)
    return values.reshape(len(column), *dims)


def _images(table, column: str | None, label: str, where: str) -> np.ndarray:
    from cnnkit.data.npz import _images as check_images, _to_uint8

    pa = _pyarrow()
    if column is None:  # pixel columns, as Kaggle's CSV
        pixels = [c for c in table.column_names if c != label]
        if not pixels:
            raise CnnkitError(f"{where} has no image column besides {clipped(label)}")
        a = np.stack([table.column(c).to_numpy(zero_copy_only=False) for c in pixels], 1)
        return square_images(_to_uint8(a, "pixels", where, 1.0), where)
    col = table.column(column)
    if pa.types.is_struct(col.type) or pa.types.is_binary(col.type) \
            or pa.types.is_large_binary(col.type):
        return _decode_bytes(col.to_pylist(), where, column)
    a = check_images(_arrays(col, where, column), column, where)
    scale = 255.0 if np.issubdtype(a.dtype, np.floating) and float(a.max()) <= 1.0 else 1.0
    return _to_uint8(a, column, where, scale)


def _split(table, where: str, label_column: str | None, info: dict | None, names):
    """(images, labels, class names) of one table."""
    label = label_column or "label"
    if label not in table.column_names:
        cols = ", ".join(clipped(c, quote=False) for c in table.column_names[:8])
        hint = " (--label-column)" if label_column else ""
        then = "" if label_column else "; name the label column with --label-column"
        raise CnnkitError(f"{where} has no column {clipped(label)}{hint}; its columns: "
                          f"{cols}{then}")
    features = _features(table, info)
    feature = features.get(label) if isinstance(features.get(label), dict) else {}
    if names is None and isinstance(feature.get("names"), list):
        names = [printable(str(n)) for n in feature["names"]]
    values = table.column(label).to_pylist()
    texts = ["" if v is None else str(v) for v in values]
    y, names = label_indices(texts, where, line_of=lambda i: f"row {i}", names=names)
    x = _images(table, _image_column(table, features, label), label, where)
    return x, y, names


def _read_parquet(path: Path, where: str):
    pq = _pyarrow().parquet
    try:
        return pq.read_table(path)
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise CnnkitError(f"cannot read {where}: {str(e).splitlines()[0]}") from None


def load_parquet(path, channels: int | None = None, size=None,
                 label_column: str | None = None) -> Dataset:
    """Load `parquet:PATH` (see the module's note), converted to `channels` and `size`."""
    from cnnkit.data.images import check_channels, check_size

    channels, size = check_channels(channels), check_size(size)
    path = readable_file(Path(path).expanduser(), "parquet file")
    where = f"parquet file '{printable(str(path))}'"
    _pyarrow()

    def read():
        x, y, names = _split(_read_parquet(path, where), where, label_column, None, None)
        check_classes(names, where)
        return {"train": x}, {"train": y}, names

    cache = cache_path(CACHE_FORMAT, path, channels, size, label_column)
    return cached_dataset(f"parquet:{path}", CACHE_FORMAT, cache, str(path), read, channels, size)


# -- a folder written by datasets' save_to_disk --------------------------------------------------
def _saved_splits(root: Path) -> dict[str, Path]:
    """{split: its folder}: train (and test) of a DatasetDict, or the one Dataset as train."""
    if (root / "dataset_dict.json").is_file():
        splits = _json(root / "dataset_dict.json").get("splits") or []
        found = {s: root / s for s in ("train", "test") if s in splits and (root / s).is_dir()}
        if "train" not in found:
            raise CnnkitError(f"'{printable(str(root))}' is a saved DatasetDict without a train "
                              f"split; it has: {', '.join(map(str, splits)) or 'none'}")
        return found
    if (root / "state.json").is_file():
        return {"train": root}
    raise CnnkitError(f"'{printable(str(root))}' is not a folder written by datasets' "
                      "save_to_disk (no dataset_dict.json or state.json)")


def _json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CnnkitError(f"cannot read '{printable(str(path))}': {e}") from None
    return d if isinstance(d, dict) else {}


def _read_saved(folder: Path):
    """The split's table: its arrow files (Arrow IPC streams) in state.json's order."""
    pa = _pyarrow()
    state = _json(folder / "state.json")
    files = [folder / f["filename"] for f in state.get("_data_files", []) if "filename" in f]
    files = files or sorted(folder.glob("*.arrow"))
    if not files:
        raise CnnkitError(f"'{printable(str(folder))}' holds no .arrow files")
    tables = []
    for f in files:
        try:
            with pa.memory_map(str(readable_file(f, "arrow file"))) as source:
                try:
                    tables.append(pa.ipc.open_stream(source).read_all())
                except pa.ArrowInvalid:
                    source.seek(0)
                    tables.append(pa.ipc.open_file(source).read_all())
        except (OSError, ValueError) as e:
            raise CnnkitError(f"cannot read '{printable(str(f))}': "
                              f"{str(e).splitlines()[0]}") from None
    info = _json(folder / "dataset_info.json") if (folder / "dataset_info.json").is_file() else None
    return pa.concat_tables(tables), info


def load_saved(path, channels: int | None = None, size=None,
               label_column: str | None = None) -> Dataset:
    """Load `hf:PATH`, a folder of datasets' save_to_disk (see the module's note)."""
    from cnnkit.data.images import check_channels, check_size

    channels, size = check_channels(channels), check_size(size)
    root = Path(path).expanduser()
    if not root.is_dir():
        raise CnnkitError(f"'{printable(str(root))}' is not a folder; hf:PATH needs a folder "
                          "written by datasets' save_to_disk")
    root = root.resolve()
    splits = _saved_splits(root)
    _pyarrow()

    def read():
        xs, ys, names = {}, {}, None
        for s, folder in splits.items():
            table, info = _read_saved(folder)
            where = f"split {s} of '{printable(str(root))}'"
            xs[s], ys[s], names = _split(table, where, label_column, info, names)
        if "test" in xs and xs["test"].shape[1:] != xs["train"].shape[1:]:
            raise CnnkitError(f"'{printable(str(root))}': test images are {xs['test'].shape[1:]}"
                              f" but train images {xs['train'].shape[1:]}")
        check_classes(names, f"'{printable(str(root))}'")
        return xs, ys, names

    # keyed by every file's size and mtime: a folder saved again is read again
    stamp = root / "state.json" if "train" not in splits or splits["train"] == root else \
        root / "dataset_dict.json"
    files = sorted(str(f.stat().st_mtime_ns) + str(f.stat().st_size)
                   for folder in splits.values() for f in folder.iterdir() if f.is_file())
    cache = cache_path(CACHE_FORMAT, stamp, channels, size, label_column, *files)
    return cached_dataset(f"hf:{path}", CACHE_FORMAT, cache, str(root), read, channels, size)
