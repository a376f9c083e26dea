"""`npz:PATH` — arrays `x_train, y_train[, x_test, y_test][, class_names]`, as Keras's mnist.npz.

Images may be (N, H, W) or (N, H, W, C) with C in {1, 3}, as uint8 or as numbers in [0, 1]
or [0, 255]; labels may be integers or one-hot rows. Everything is checked up front, so a bad
file fails with one line naming the file, the array and what is wrong.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from cnnkit.data.base import Dataset
from cnnkit.errors import CnnkitError


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
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise CnnkitError(f"{key} in {where} has dtype {a.dtype}; expected numbers")
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
    elif y.ndim == 2:
        y = y[:, 0]
    if y.ndim != 1:
        raise CnnkitError(f"{key} in {where} has shape {y.shape}; expected (N,) labels")
    if not np.issubdtype(y.dtype, np.number):
        raise CnnkitError(f"{key} in {where} has dtype {y.dtype}; expected integer labels")
    if len(y) != n:
        raise CnnkitError(
            f"{key} in {where} has {len(y)} labels but x_{key[2:]} has {n} images"
        )
    if not np.issubdtype(y.dtype, np.integer):
        if not (np.isfinite(y).all() and (y == np.round(y)).all()):
            raise CnnkitError(f"{key} in {where} has non-integer labels")
    y = y.astype(np.int64)
    if (y < 0).any():
        raise CnnkitError(f"{key} in {where} has negative labels (min {int(y.min())})")
    return y


def load_npz(path: str | os.PathLike) -> Dataset:
    """Load `npz:PATH` as a Dataset."""
    path = Path(path).expanduser()
    where = f"'{path}'"
    if not path.is_file():
        raise CnnkitError(f"npz file {where} does not exist")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile):  # numpy's own words mention pickles
        raise CnnkitError(f"cannot read {where}: not an npz archive (np.savez output)") from None
    except OSError as e:
        raise CnnkitError(f"cannot read {where}: {e.strerror or e}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise CnnkitError(f"{where} is a single .npy array, not an npz archive with x_train, y_train")
    with archive:
        keys = set(archive.files)
        missing = [k for k in ("x_train", "y_train") if k not in keys]
        if ("x_test" in keys) != ("y_test" in keys):
            missing.append("y_test" if "x_test" in keys else "x_test")
        if missing:
            raise CnnkitError(
                f"npz file {where} is missing array(s) {', '.join(missing)}; "
                f"it has: {', '.join(sorted(keys)) or 'nothing'}"
            )
        arrays = {}
        for k in ("x_train", "y_train", "x_test", "y_test", "class_names"):
            if k not in keys:
                continue
            try:
                arrays[k] = archive[k]
            except ValueError as e:
                if "Object arrays" in str(e):  # we never unpickle
                    raise CnnkitError(f"{k} in {where} is an object array; save it with "
                                      "np.array(..., dtype=str) (or a number dtype)") from None
                raise CnnkitError(f"cannot read {k} in {where}: {e}") from None
            except (OSError, EOFError, zipfile.BadZipFile) as e:
                raise CnnkitError(f"cannot read {k} in {where}: {e}") from None

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
        names = [str(c) for c in np.asarray(arrays["class_names"]).reshape(-1)]
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
    x = {s: torch.from_numpy(np.ascontiguousarray(v)) for s, v in xs.items()}
    y = {s: torch.from_numpy(v) for s, v in ys.items()}
    return Dataset(
        name=f"npz:{path}",
        class_names=names,
        x_train=x["train"],
        y_train=y["train"],
        x_test=x.get("test"),
        y_test=y.get("test"),
        source=str(path),
    )
