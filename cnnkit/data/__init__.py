"""Datasets by name: one call gives a `Dataset` wherever a dataset is asked for.

    load_dataset("mnist")                  # also fashion-mnist, kmnist, cifar10, cifar100
    load_dataset("digits")                 # scikit-learn's 1,797 8x8 digits, always offline
    load_dataset("folder:photos/")         # one subfolder per class (or train/ + test/)
    load_dataset("npz:mnist.npz")          # x_train, y_train[, x_test, y_test]
    load_dataset("csv:train.csv")          # label,pixel0,... rows (Kaggle) or file,label rows
    load_dataset("parquet:train.parquet")  # an image column and a label column (pyarrow)
    load_dataset("hf:saved/")              # a folder of Hugging Face datasets' save_to_disk

`channels` (1 or 3) and `size` ((H, W)) convert any of them, so a model trained at one shape
can be fed from any source. Importing this package stays cheap (no torch) so that stdlib-only
modules such as `cnnkit.data.download` can be imported on their own; torch loads on first use.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from cnnkit.errors import CnnkitError, one_of

if TYPE_CHECKING:
    from cnnkit.data.base import Dataset

MNIST_NAMES = ["mnist", "fashion-mnist", "kmnist", "cifar10", "cifar100"]
DATASET_NAMES = [*MNIST_NAMES, "digits", "folder:PATH", "npz:PATH", "csv:PATH", "parquet:PATH",
                 "hf:PATH"]
TABLES = ("csv:", "parquet:", "hf:")  # the sources that take label_column

# Pillow's ITU-R 601 luma weights in its own 16-bit fixed point, L = (19595 R + 38470 G + 7471 B
# + 2^15) >> 16: RGB → gray here is bit for bit what `Image.convert("L")` gives.
_LUMA = (19595, 38470, 7471)
_CHUNK = 4096  # images per conversion step: bounds the float copy's memory


SIZES = "HxW such as 160x160 or 28x32, or one number N for NxN"


def check_channels(channels, option: str = "channels") -> int | None:
    """1 or 3 (None: the data's own); the error names `option` (a RunSpec field, say)."""
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise CnnkitError(f"unknown {option} {channels!r}; valid: 1 (grayscale), 3 (RGB)",
                          option=option, value=channels)
    return None if channels is None else int(channels)


def check_size(size, option: str = "image size") -> tuple[int, int] | None:
    """(H, W) from an int N (N x N), a pair of ints, or text "HxW" / "N" as typed on a command
    line; None keeps the images' own size. Stdlib only: a RunSpec is checked before torch."""
    import numbers

    if size is None:
        return None
    if isinstance(size, str):
        parts = size.strip().lower().replace(",", "x").split("x")
        dims = [int(p) for p in parts] if all(p.strip().isdecimal() for p in parts) else []
    elif isinstance(size, (list, tuple)):
        dims = list(size)
    else:
        dims = [size]
    if len(dims) == 1:
        dims *= 2  # N is N x N
    if len(dims) != 2 or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool)
                                 for d in dims):
        raise CnnkitError(f"invalid {option} {size!r}; valid: {SIZES}", option=option, value=size)
    if min(dims) < 1:
        raise CnnkitError(f"invalid {option} {size!r}; height and width must be at least 1 "
                          f"(valid: {SIZES})", option=option, value=size)
    return int(dims[0]), int(dims[1])


def _canonical(name: str) -> str:
    """'Fashion_MNIST' → 'fashion-mnist'; paths after 'folder:'/'npz:' are kept as given."""
    prefix, sep, rest = name.partition(":")
    if sep:
        return f"{prefix.strip().lower()}:{rest}"
    return name.strip().lower().replace("_", "-")


def anchored(name: str) -> str:
    """`name` with a `folder:`/`npz:` path made absolute from the current directory (as it is
    now), so a run started here can be resumed from anywhere; other names unchanged."""
    import os

    kind, sep, path = _canonical(name).partition(":")
    if not sep or kind not in ("folder", "npz") or not path.strip():
        return name
    return f"{kind}:{os.path.abspath(os.path.expanduser(path))}"


def _digits_arrays():
    """(images (1797, 8, 8) in 0..16, labels) from scikit-learn's bundled digits.csv.gz.

    Read straight from the package's data file: importing sklearn costs far more than
    loading the file (bench/README.md). sklearn's own loader is the fallback should the file
    ever move."""
    import gzip
    import importlib.util
    from pathlib import Path

    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        f = Path(loc) / "datasets" / "data" / "digits.csv.gz"
        if f.is_file():
            with gzip.open(f, "rt") as fh:
                table = np.loadtxt(fh, delimiter=",", dtype=np.int64)  # (1797, 65)
            return table[:, :-1].reshape(-1, 8, 8), table[:, -1]
    from sklearn.datasets import load_digits as sk_load_digits

    d = sk_load_digits()
    return d.images, d.target


def load_digits() -> Dataset:
    """scikit-learn's handwritten digits: 1,797 8x8 gray images, 0..16 scaled to 0..255."""
    import numpy as np
    import torch

    from cnnkit.data.base import Dataset

    images, labels = _digits_arrays()
    x = np.rint(images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # (1797, 8, 8, 1)
    return Dataset(
        name="digits",
        class_names=[str(i) for i in range(10)],
        x_train=torch.from_numpy(x),
        y_train=torch.from_numpy(labels.astype(np.int64)),
        source="scikit-learn load_digits (UCI optical recognition of handwritten digits)",
    )


def convert_images(x, channels: int | None = None, size=None):
    """uint8 (N, H, W, C) → uint8 (N, H', W', C'), batched on tensors: cnnkit's one conversion
    of pixels. Datasets, decoded files and folders (cnnkit.data.images) and the arrays users
    hand a model (cnnkit.model.inputs) all come through here, so an image is the same pixels
    to a model whichever way it arrives.

    C is 1 (gray), 3 (RGB) or 4 (RGBA); channels 1 or 3, None keeps gray and RGB and drops
    alpha. Alpha is composited over white (as a viewer shows it) and RGB → gray uses Pillow's
    luma, both in Pillow's integer arithmetic; gray → RGB repeats the channel. Resizing is
    bilinear, antialiased when shrinking (as Pillow's resize is), rounded back to uint8."""
    import torch

    channels, size = check_channels(channels), check_size(size)
    n, h, w, c = x.shape
    if c not in (1, 3, 4):
        raise CnnkitError(f"images with {c} channels cannot be converted; valid: 1 (gray), "
                          "3 (RGB) or 4 (RGBA)")
    out_c = channels or (3 if c == 4 else c)
    out_h, out_w = size or (h, w)
    if out_c == c and (out_h, out_w) == (h, w):
        return x
    if n <= _CHUNK:  # one chunk (a file, a predict batch): no second buffer to copy into
        return _convert(x, out_c, out_h, out_w)
    out = torch.empty((n, out_h, out_w, out_c), dtype=torch.uint8)
    for i in range(0, n, _CHUNK):
        out[i:i + _CHUNK] = _convert(x[i:i + _CHUNK], out_c, out_h, out_w)
    return out


def _convert(b, out_c: int, out_h: int, out_w: int):
    """One chunk (B, H, W, C) uint8; channels are reduced before resizing, added after."""
    if b.shape[-1] == 4:
        b = _over_white(b)
    if out_c == 1 and b.shape[-1] == 3:
        b = _luma(b)
    if tuple(b.shape[1:3]) != (out_h, out_w):
        b = _resize(b, out_h, out_w)
    if out_c == 3 and b.shape[-1] == 1:
        b = b.expand(-1, -1, -1, 3)  # gray → RGB repeats the channel
    return b.contiguous()


def _over_white(b):
    """RGBA → RGB over an opaque white background: Pillow's alpha_composite, exactly."""
    rgb, a = b[..., :3].int(), b[..., 3:].int()
    return ((rgb * a + 255 * (255 - a) + 127) // 255).to(b.dtype)


def _luma(b):
    """RGB → gray (B, H, W, 1) in Pillow's fixed point (`_LUMA`)."""
    import torch

    weighted = (b.int() * torch.tensor(_LUMA, dtype=torch.int32)).sum(-1, keepdim=True)
    return ((weighted + 32768) >> 16).to(torch.uint8)


def _resize(b, out_h: int, out_w: int):
    """Bilinear resize of uint8 (B, H, W, C), antialiased when either side shrinks."""
    import torch
    import torch.nn.functional as F

    _, h, w, _ = b.shape
    f = b.permute(0, 3, 1, 2).float()  # (B, C, H, W)
    f = F.interpolate(f, size=(out_h, out_w), mode="bilinear", align_corners=False,
                      antialias=out_h < h or out_w < w)
    return f.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def convert(ds: Dataset, channels: int | None = None, size=None) -> Dataset:
    """The same dataset with its images converted to `channels` and `size`: once, into a
    memory-mapped cache file (cnnkit.data.mapped.map_converted), as folders and npz files
    are decoded at their target size."""
    channels, size = check_channels(channels), check_size(size)
    c = ds.image_shape[2]
    if (channels or (3 if c == 4 else c)) == c and (size or ds.image_shape[:2]) == ds.image_shape[:2]:
        return ds
    from cnnkit.data.mapped import map_converted

    return map_converted(ds, channels, size)


def load_dataset(name: str, data_dir=None, channels: int | None = None, size=None,
                 download: bool = True, progress: bool = True, label_column: str | None = None,
                 image_root=None) -> Dataset:
    """The dataset called `name` (see DATASET_NAMES), converted to `channels` and `size`.

    data_dir is where to look first for the MNIST-family files (and where to download them);
    folder, npz, csv, parquet and hf sources take their path from the name itself.
    label_column names a table's label column (default: `label`); image_root is where a
    `file,label` CSV's files are (default: the table's folder)."""
    if not isinstance(name, str) or not name.strip():
        raise one_of("dataset", name, DATASET_NAMES)
    channels, size = check_channels(channels), check_size(size)
    key = _canonical(name)
    if key.startswith(TABLES):
        return _load_table(name, key, channels, size, label_column, image_root)
    for option, value in (("label_column", label_column), ("image_root", image_root)):
        if value is not None:
            raise CnnkitError(f"{option}={value!r} is for csv:, parquet: and hf: datasets, not "
                              f"{name!r}", option=option, value=value)
    if key in MNIST_NAMES:
        from cnnkit.data.mnist import load_mnist_family

        ds = load_mnist_family(key, data_dir=data_dir, download=download, progress=progress)
    elif key == "digits":
        ds = load_digits()
    elif key.startswith(("folder:", "npz:")):
        kind, _, path = key.partition(":")
        if not path.strip():
            raise CnnkitError(f"dataset {name!r} names no path; write {kind}:PATH")
        if kind == "folder":
            from cnnkit.data.folder import load_folder

            return load_folder(path, channels=channels, size=size)  # decodes at the target shape
        from cnnkit.data.npz import load_npz

        return load_npz(path, channels=channels, size=size)  # converted as it is cached
    else:
        raise one_of("dataset", name, DATASET_NAMES)
    return convert(ds, channels, size)


def _load_table(name: str, key: str, channels, size, label_column, image_root) -> Dataset:
    kind, _, path = key.partition(":")
    if not path.strip():
        raise CnnkitError(f"dataset {name!r} names no path; write {kind}:PATH")
    if label_column is not None and (not isinstance(label_column, str) or not label_column):
        raise CnnkitError(f"label_column={label_column!r} is not a column name",
                          option="label_column", value=label_column)
    if kind == "csv":
        from cnnkit.data.csv import load_csv

        return load_csv(path, channels, size, label_column, image_root)
    if image_root is not None:
        raise CnnkitError(f"image_root={image_root!r} is for a csv: table of image files, not "
                          f"{name!r}", option="image_root", value=image_root)
    from cnnkit.data.parquet import load_parquet, load_saved

    return (load_parquet if kind == "parquet" else load_saved)(path, channels, size, label_column)


def dataset_status(data_dir=None) -> list[tuple[str, bool, str]]:
    """(name, available offline now, where it is or how it is obtained) for `data list`."""
    from cnnkit.data.mnist import locate

    rows = []
    for name in MNIST_NAMES:
        where = locate(name, data_dir=data_dir)
        if where is not None:
            rows.append((name, True, str(where)))
        else:
            rows.append((name, False, "downloaded (and cached) on first use"))
    rows.append(("digits", True, "bundled with scikit-learn"))
    rows.append(("folder:PATH", True, "your images, one subfolder per class (or train/ + test/)"))
    rows.append(("npz:PATH", True, "your arrays: x_train, y_train[, x_test, y_test]"))
    rows.append(("csv:PATH", True, "a table: label,pixel0,... rows (Kaggle) or file,label rows"))
    rows.append(("parquet:PATH", True, "a table: an image column and a label column"))
    rows.append(("hf:PATH", True, "a folder saved by Hugging Face datasets' save_to_disk"))
    return rows


def __getattr__(name: str):
    if name == "Dataset":  # lazily, so `import cnnkit.data` does not import torch
        from cnnkit.data.base import Dataset

        return Dataset
    if name == "loader":
        from cnnkit.data.loader import loader

        # importing the submodule cnnkit.data.loader set this package's `loader` to the
        # module: the function takes the name back, or the next `cnnkit.data.loader(...)`
        # would call a module
        globals()["loader"] = loader
        return loader
    raise AttributeError(f"module 'cnnkit.data' has no attribute {name!r}")


__all__ = ["DATASET_NAMES", "Dataset", "anchored", "loader", "convert", "convert_images",
           "dataset_status", "load_dataset", "load_digits"]
