"""The MNIST family (mnist, fashion-mnist, kmnist), CIFAR-10 and CIFAR-100, from their original
files (CIFAR's decoding: cnnkit.data.cifar).

Where the files are looked for, in order:
  1. the `data_dir` argument (`--data-dir`): the directory itself, or its `<name>/` subfolder;
  2. cnnkit's cache: `$CNNKIT_DATA/<name>/`, else `$XDG_CACHE_HOME/cnnkit/<name>/`
     (`~/.cache/cnnkit/<name>/`);
  3. system dataset directories: `<dir>/datasets/<name>/` for each dir in `$XDG_DATA_DIRS`,
     then `/usr/local/share` and `/usr/share`. Debian's `dataset-fashion-mnist` installs the
     four IDX files in `/usr/share/datasets/fashion-mnist/`;
  4. downloaded into the cache from the official location or a mirror, SHA-256 verified.

Decoding is one `np.frombuffer` per file. The decoded tensors are then cached as an uncompressed
.npz beside the downloads (keyed by the source files' paths, sizes and mtimes), because
gunzipping is most of the cost of a load (bench/README.md has the figures).
"""
from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnkit.data.cifar import CIFAR100_COARSE, CIFAR100_FINE, batch_files
from cnnkit.data.download import DownloadError, download as _download, sha256_of
from cnnkit.data.idx import read_images_labels
from cnnkit.errors import CnnkitError, one_of


@dataclass(frozen=True)
class RemoteFile:
    """One published file: its name, SHA-256 as published, and byte size."""

    name: str
    sha256: str
    size: int
    # SHA-256 of known faithful repackagings (same pixels, different gzip header): accepted
    # for files found on disk, never for downloads.
    also_accept: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str
    homepage: str
    mirrors: tuple[str, ...]  # base URLs, tried in order; each + file name is a download URL
    files: tuple[RemoteFile, ...]
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]  # (H, W, C)
    # "idx": train/t10k images+labels; "cifar-binary", "cifar100-binary": one tar.gz
    format: str = "idx"

    def urls(self, f: RemoteFile) -> list[str]:
        return [m.rstrip("/") + "/" + f.name for m in self.mirrors]


def _idx_files(sha: dict[str, str], size: dict[str, int],
               also: dict[str, str] | None = None) -> tuple[RemoteFile, ...]:
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    also = also or {}
    return tuple(RemoteFile(n, sha[n], size[n], (also[n],) if n in also else ()) for n in names)


# SHA-256 and sizes of the published files, as pinned by TensorFlow Datasets' download
# checksums and torchvision's prototype datasets (torchvision/prototype/datasets/_builtin/
# mnist.py); Fashion-MNIST's also match the table in the zalandoresearch/fashion-mnist README.
MNIST_FAMILY: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist", title="MNIST handwritten digits",
        homepage="http://yann.lecun.com/exdb/mnist/",
        # yann.lecun.com now often answers 403; the CVDF (TensorFlow) and PyTorch CI mirrors
        # serve the identical files and go first so a download doesn't wait on it.
        mirrors=("https://storage.googleapis.com/cvdf-datasets/mnist/",
                 "https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "http://yann.lecun.com/exdb/mnist/"),
        files=_idx_files(
            {"train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
             "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
             "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
             "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"},
            {"train-images-idx3-ubyte.gz": 9912422, "train-labels-idx1-ubyte.gz": 28881,
             "t10k-images-idx3-ubyte.gz": 1648877, "t10k-labels-idx1-ubyte.gz": 4542}),
        class_names=tuple("0123456789"), image_shape=(28, 28, 1)),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist", title="Fashion-MNIST (Zalando)",
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                 "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
                 "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"),
        files=_idx_files(
            {"train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
             "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
             "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
             "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"},
            {"train-images-idx3-ubyte.gz": 26421880, "train-labels-idx1-ubyte.gz": 29515,
             "t10k-images-idx3-ubyte.gz": 4422102, "t10k-labels-idx1-ubyte.gz": 5148},
            # Debian's dataset-fashion-mnist (0.0~git20200523.55506a9-1) re-gzips the same
            # deflate streams without the file-name header field (each file is 23-24 bytes
            # shorter, same pixels); sha256sum of /usr/share/datasets/fashion-mnist/*.gz:
            also={"train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
                  "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
                  "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
                  "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"}),
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                     "Sneaker", "Bag", "Ankle boot"),
        image_shape=(28, 28, 1)),
    "kmnist": DatasetSpec(
        name="kmnist", title="Kuzushiji-MNIST (cursive Japanese hiragana)",
        homepage="http://codh.rois.ac.jp/kmnist/",
        mirrors=("https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
                 "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"),
        files=_idx_files(
            {"train-images-idx3-ubyte.gz": "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
             "train-labels-idx1-ubyte.gz": "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
             "t10k-images-idx3-ubyte.gz": "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
             "t10k-labels-idx1-ubyte.gz": "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c"},
            {"train-images-idx3-ubyte.gz": 18165135, "train-labels-idx1-ubyte.gz": 29497,
             "t10k-images-idx3-ubyte.gz": 3041136, "t10k-labels-idx1-ubyte.gz": 5120}),
        # Romanized hiragana (kmnist_classmap.csv: お き す つ な は ま や れ を): plot fonts
        # rarely carry kana.
        class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        image_shape=(28, 28, 1)),
    "cifar10": DatasetSpec(
        name="cifar10", title="CIFAR-10 (binary version)",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        mirrors=("https://www.cs.toronto.edu/~kriz/", "http://www.cs.toronto.edu/~kriz/"),
        # The binary tarball, never the Python one: that one is pickles.
        # SHA-256 as pinned by TensorFlow Datasets and torchvision-ruby.
        files=(RemoteFile("cifar-10-binary.tar.gz",
                          "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
                          170052171),),
        class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                     "ship", "truck"),
        image_shape=(32, 32, 3), format="cifar-binary"),
    "cifar100": DatasetSpec(
        name="cifar100", title="CIFAR-100 (binary version; 100 fine classes, 20 coarse)",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        mirrors=("https://www.cs.toronto.edu/~kriz/", "http://www.cs.toronto.edu/~kriz/"),
        # SHA-256 as pinned by torchvision-ruby and JuliaML's MLDatasets; size as TFDS's
        files=(RemoteFile("cifar-100-binary.tar.gz",
                          "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec",
                          168513733),),
        class_names=CIFAR100_FINE, image_shape=(32, 32, 3), format="cifar100-binary"),
}

_DECODED = "decoded-v1.npz"
_COARSE = ("y_train_coarse", "y_test_coarse")  # CIFAR-100's 20 superclasses


def _spec(name: str) -> DatasetSpec:
    if name not in MNIST_FAMILY:
        raise one_of("dataset", name, MNIST_FAMILY)
    return MNIST_FAMILY[name]


def cache_dir() -> Path:
    """cnnkit's data cache: $CNNKIT_DATA, else $XDG_CACHE_HOME/cnnkit, else ~/.cache/cnnkit."""
    if os.environ.get("CNNKIT_DATA"):
        return Path(os.environ["CNNKIT_DATA"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg and os.path.isabs(os.path.expanduser(xdg)) \
        else Path.home() / ".cache"
    return base / "cnnkit"


def system_dirs(name: str) -> list[Path]:
    """`<dir>/datasets/<name>` for each XDG data dir: where OS packages put datasets."""
    # The defaults are kept even when XDG_DATA_DIRS is set: desktop sessions set it to lists
    # that omit /usr/share, which is where Debian's dataset packages are.
    dirs = (os.environ.get("XDG_DATA_DIRS") or "").split(":") + ["/usr/local/share", "/usr/share"]
    return [Path(d) / "datasets" / name for d in dict.fromkeys(d for d in dirs if d)]


def search_dirs(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """Every directory looked in, in order (for `locate` and for messages)."""
    dirs: list[Path] = []
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        dirs += [data_dir, data_dir / name]
    return dirs + [cache_dir() / name] + system_dirs(name)


def _find_file(folder: Path, f: RemoteFile) -> Path | None:
    """The file as published, or gunzipped beside it (users often gunzip)."""
    for candidate in (folder / f.name, folder / f.name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _complete(spec: DatasetSpec, folder: Path) -> bool:
    if spec.format != "idx" and all((folder / b).is_file() for b in batch_files(spec.format)):
        return True  # an already-extracted tarball
    return all(_find_file(folder, f) is not None for f in spec.files)


def locate(name: str, data_dir: str | Path | None = None) -> Path | None:
    """The first directory holding all of `name`'s files (no network), or None."""
    spec = _spec(name)
    for folder in search_dirs(name, data_dir):
        if folder.is_dir() and _complete(spec, folder):
            return folder
    return None


def fetch(name: str, progress: bool = True) -> Path:
    """Download `name`'s missing files into the cache; returns the cache folder."""
    spec = _spec(name)
    folder = cache_dir() / name
    for f in spec.files:
        if _find_file(folder, f) is not None:
            continue
        try:
            # the published size: free space is checked, and a larger body refused
            _download(spec.urls(f), folder / f.name, f.sha256, progress=progress, size=f.size)
        except DownloadError as e:
            names = ", ".join(f.name for f in spec.files)
            why = (f"this machine looks offline ({e.failures[0]})" if e.offline and e.failures
                   else f"{f.name}: {'; '.join(e.failures)}")
            raise CnnkitError(
                f"cannot download {name}: {why}; put {names} in {folder}/ "
                f"(or pass --data-dir DIR holding them)") from None
    return folder


# ---- decoding ---------------------------------------------------------------------------------

def _source_files(spec: DatasetSpec, folder: Path) -> list[Path]:
    if spec.format != "idx" and _find_file(folder, spec.files[0]) is None:
        return [folder / b for b in batch_files(spec.format)]
    return [p for f in spec.files if (p := _find_file(folder, f)) is not None]


def _checksums_ok(spec: DatasetSpec, files: list[Path]) -> bool:
    """True when every file is byte-identical to a known published (or repackaged) copy.
    Files that differ are still used if they decode to the right shapes: a user's own
    re-gzipped copy is legitimate, so this is reported, not enforced."""
    known = {f.name: (f.sha256, *f.also_accept) for f in spec.files}
    return all(p.name in known and sha256_of(p) in known[p.name] for p in files)


def _decode_idx(spec: DatasetSpec, folder: Path) -> dict[str, np.ndarray]:
    paths = {f.name: _find_file(folder, f) for f in spec.files}
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x, y = read_images_labels(paths[f"{prefix}-images-idx3-ubyte.gz"],
                                  paths[f"{prefix}-labels-idx1-ubyte.gz"])
        h, w, _ = spec.image_shape
        if x.shape[1:] != (h, w):
            raise CnnkitError(f"{paths[f'{prefix}-images-idx3-ubyte.gz']}: images are "
                              f"{x.shape[1]}x{x.shape[2]}, {spec.name} images are {h}x{w}")
        out[f"x_{split}"], out[f"y_{split}"] = x[..., None], y  # (N, H, W, 1)
    return out


def _decode_cifar(spec: DatasetSpec, folder: Path) -> dict[str, np.ndarray]:
    from cnnkit.data.cifar import decode_cifar

    return decode_cifar(spec.format, _find_file(folder, spec.files[0]), folder)


def _cache_key(files: list[Path]) -> str:
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return json.dumps({"version": 1, "files": stats})


def _read_decoded(path: Path, key: str) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            return {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test", *_COARSE)
                    if k in z or k not in _COARSE} | {"verified": bool(z["verified"])}
    except (OSError, KeyError, ValueError, zlib.error, EOFError):
        return None  # missing, stale or damaged: decode again


def _write_decoded(path: Path, key: str, arrays: dict[str, np.ndarray], verified: bool) -> None:
    from cnnkit.fsutil import atomic_path
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:  # a file object, so numpy doesn't append ".npz"
                np.savez(f, key=np.array(key), verified=np.array(verified), **arrays)
    except (OSError, CnnkitError):
        pass  # a read-only or full cache (or something odd at its name) only costs speed


def load_mnist_family(name: str, data_dir: str | Path | None = None, download: bool = True,
                      progress: bool = True):
    """Load `name` (mnist, fashion-mnist, kmnist, cifar10, cifar100) as a `Dataset` with its
    official test split (CIFAR-100: the fine labels; the coarse ones, uint8 arrays, in
    info['coarse_labels'] with info['coarse_class_names']). Finds the files offline first (see
    the module docstring), downloads into the cache when allowed, and raises one CnnkitError
    line saying where to put the files if not.

    Decoded tensors are kept in `<cache>/<name>/decoded-v1.npz` (uncompressed, 55 MB for
    Fashion-MNIST): a later load reads them instead of gunzipping and checking again, several
    times faster than the first (bench/README.md).
    """
    import torch

    from cnnkit.data.base import Dataset

    spec = _spec(name)
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        # A mistyped --data-dir must not silently fall through to a download.
        raise CnnkitError(f"data dir {str(data_dir)!r} does not exist or is not a directory")
    folder = locate(name, data_dir)
    if folder is None:
        if not download:
            names = ", ".join(f.name for f in spec.files)
            looked = ", ".join(str(d) for d in search_dirs(name, data_dir))
            raise CnnkitError(f"{name} is not on this machine (looked in {looked}) and "
                              f"download is off; put {names} in {cache_dir() / name}/")
        folder = fetch(name, progress=progress)

    files = _source_files(spec, folder)
    key = _cache_key(files)
    decoded_path = cache_dir() / name / _DECODED
    arrays = _read_decoded(decoded_path, key)
    if arrays is None:
        decode = _decode_idx if spec.format == "idx" else _decode_cifar
        arrays = decode(spec, folder)
        arrays["verified"] = _checksums_ok(spec, files)
        for split in ("train", "test"):
            y = arrays[f"y_{split}"]
            if len(y) and int(y.max()) >= len(spec.class_names):
                raise CnnkitError(f"{folder}: {split} label {int(y.max())} is out of range "
                                  f"for {name}'s {len(spec.class_names)} classes")
        coarse = arrays.get("y_train_coarse")
        if coarse is not None and len(coarse) and int(coarse.max()) >= len(CIFAR100_COARSE):
            raise CnnkitError(f"{folder}: train coarse label {int(coarse.max())} is out of "
                              f"range for {name}'s {len(CIFAR100_COARSE)} superclasses")
        _write_decoded(decoded_path, key, {k: v for k, v in arrays.items() if k != "verified"},
                       arrays["verified"])

    def tensor(a: np.ndarray, dtype) -> torch.Tensor:
        # np.load / frombuffer arrays may be read-only; torch needs writable memory.
        return torch.from_numpy(a if a.flags.writeable else a.copy()).to(dtype)

    return Dataset(
        name=name, class_names=list(spec.class_names),
        x_train=tensor(arrays["x_train"], torch.uint8),
        y_train=tensor(arrays["y_train"], torch.int64),
        x_test=tensor(arrays["x_test"], torch.uint8),
        y_test=tensor(arrays["y_test"], torch.int64),
        source=str(folder),
        info={"files": [str(p) for p in files], "sha256_verified": arrays["verified"],
              "title": spec.title, "homepage": spec.homepage, **_coarse_info(arrays)})


def _coarse_info(arrays: dict) -> dict:
    """CIFAR-100's superclass labels of each split, and their names; {} for other sets."""
    if _COARSE[0] not in arrays:
        return {}
    return {"coarse_labels": {"train": arrays["y_train_coarse"], "test": arrays["y_test_coarse"]},
            "coarse_class_names": list(CIFAR100_COARSE)}
