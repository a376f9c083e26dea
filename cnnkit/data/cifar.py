"""CIFAR-10 and CIFAR-100 from their binary tarballs (never the Python ones: those are pickles).

CIFAR-10: cifar-10-batches-bin/data_batch_{1..5}.bin and test_batch.bin, records of
[label, 1024 R, 1024 G, 1024 B] bytes. CIFAR-100: cifar-100-binary/train.bin and test.bin,
records of [coarse label, fine label, 1024 R, 1024 G, 1024 B]. Either the .tar.gz as
published or its extracted folder.
"""
from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from pathlib import Path

import numpy as np

from cnnkit.errors import CnnkitError

# (folder inside the tarball, train files, test file, label bytes before the pixels)
LAYOUTS = {
    "cifar-binary": ("cifar-10-batches-bin", tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
                     "test_batch.bin", 1),
    "cifar100-binary": ("cifar-100-binary", ("train.bin",), "test.bin", 2),
}

# fine_label_names.txt and coarse_label_names.txt of cifar-100-binary, in label order
CIFAR100_FINE = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm")
CIFAR100_COARSE = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
    "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2")


def batch_files(fmt: str) -> list[str]:
    """The extracted files' paths inside the tarball, train first."""
    folder, train, test, _ = LAYOUTS[fmt]
    return [f"{folder}/{b}" for b in (*train, test)]


def records(where: str, data, labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of [`labels` label bytes, 1024 R, 1024 G, 1024 B] -> images (N, 32, 32, 3) and
    labels (N, `labels`)."""
    record = labels + 32 * 32 * 3
    if len(data) == 0 or len(data) % record:
        raise CnnkitError(f"{where}: {len(data)} bytes is not a whole number of CIFAR "
                          f"records ({record} bytes each); the file is truncated or corrupt")
    rows = np.frombuffer(data, np.uint8).reshape(-1, record)
    x = np.empty((len(rows), 32 * 32, 3), np.uint8)
    for k in range(3):  # one plane at a time: contiguous copies, where a CHW->HWC transpose
        #                 copy strides through memory (bench/README.md)
        x[:, :, k] = rows[:, labels + 1024 * k: labels + 1024 * (k + 1)]
    return x.reshape(-1, 32, 32, 3), rows[:, :labels].copy()


def _blobs(tar_path: Path, fmt: str) -> dict[str, memoryview]:
    """The batch files inside the (gzipped) tarball, as zero-copy views of one buffer:
    gunzipping in one call is several times faster than tarfile's streaming reads."""
    names = [Path(b).name for b in batch_files(fmt)]
    try:
        raw = tar_path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            members = {Path(m.name).name: m for m in tar if m.isfile()}
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise CnnkitError(f"{tar_path}: corrupt or truncated archive ({e}); "
                          f"download it again") from None
    missing = [b for b in names if b not in members]
    if missing:
        raise CnnkitError(f"{tar_path}: not the CIFAR binary archive it should be (missing "
                          f"{', '.join(missing)})")
    view = memoryview(raw)
    blobs = {}
    for b in names:
        m = members[b]
        if m.offset_data + m.size > len(raw):
            raise CnnkitError(f"{tar_path}: truncated archive ({b} is cut short)")
        blobs[b] = view[m.offset_data: m.offset_data + m.size]
    return blobs


def decode_cifar(fmt: str, tar_path: Path | None, folder: Path) -> dict[str, np.ndarray]:
    """x_train, y_train, x_test, y_test (CIFAR-100: the fine labels, and y_*_coarse) from the
    tarball, or from its extracted folder under `folder` when `tar_path` is None."""
    sub, train, test, labels = LAYOUTS[fmt]
    if tar_path is None:
        where = folder / sub
        blobs = {b: (where / b).read_bytes() for b in (*train, test)}
    else:
        where, blobs = tar_path, _blobs(tar_path, fmt)
    parts = [records(f"{where}:{b}", blobs[b], labels) for b in train]
    x_test, y_test = records(f"{where}:{test}", blobs[test], labels)
    y_train = np.concatenate([y for _, y in parts])
    out = {"x_train": np.concatenate([x for x, _ in parts]), "y_train": y_train[:, -1],
           "x_test": x_test, "y_test": y_test[:, -1]}
    if labels == 2:  # CIFAR-100: [coarse, fine]
        out["y_train_coarse"], out["y_test_coarse"] = y_train[:, 0], y_test[:, 0]
    return out
