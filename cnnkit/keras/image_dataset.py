"""Keras's `utils.image_dataset_from_directory`: one folder per class in, a batched dataset of
float32 (B, H, W, C) images and their labels out, which `fit`, `evaluate` and `predict` take.

The files are listed, shuffled and split the way Keras 3 does it (its dataset_utils): class
folders in name order (or `class_names`' order), each walked folder by folder in path order
and file name order, only .bmp .gif .jpeg .jpg .png; then the whole list shuffled by
`np.random.RandomState(seed)` and the last `int(validation_split * n)` files kept for
validation. So `subset="training"` and `"validation"` hold the very files Keras gives them.
The images are decoded once through cnnkit's folder reader and its cache
(cnnkit.data.folder.load_folder, resized bilinear to `image_size`) and kept as uint8; a batch
is made float32 when it is read. Each pass over a shuffled dataset takes a new order (seeded),
as Keras's dataset does; the order within an epoch is cnnkit's, not tf.data's buffer shuffle.
"""
from __future__ import annotations

import math
import os

import numpy as np

from cnnkit.errors import CnnkitError, clipped, shown

ALLOWLIST_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # Keras's, and only these
COLOR_MODES = {"grayscale": 1, "rgb": 3}
KERAS_INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5",
                        "gaussian", "mitchellcubic")


def image_dataset_from_directory(directory, labels="inferred", label_mode="int",
                                 class_names=None, color_mode="rgb", batch_size=32,
                                 image_size=(256, 256), shuffle=True, seed=None,
                                 validation_split=None, subset=None, interpolation="bilinear",
                                 follow_links=False, crop_to_aspect_ratio=False,
                                 pad_to_aspect_ratio=False, data_format=None, format="tf",
                                 verbose=True):
    """An ImageDataset (or [training, validation] for `subset="both"`), as Keras returns."""
    labels, label_mode, channels, image_size = _check(
        labels, label_mode, class_names, color_mode, batch_size, image_size, interpolation,
        follow_links, crop_to_aspect_ratio, pad_to_aspect_ratio, data_format, format)
    check_validation_split_arg(validation_split, subset, shuffle, seed)
    if seed is None:
        seed = np.random.randint(1e6)
    from cnnkit.data.folder import load_folder

    folder = load_folder(directory, channels, image_size, classes_only=True)
    rows, y, names = _index(folder, labels, class_names)
    if verbose:
        print(f"Found {len(rows)} files." if y is None else
              f"Found {len(rows)} files belonging to {len(names)} classes.")
    if label_mode == "binary" and len(names) != 2:
        raise CnnkitError('When passing `label_mode="binary"`, there must be exactly 2 '
                          f"class_names. Received: class_names={names}")
    if shuffle:  # Keras: the whole list, by RandomState(seed), before the split
        order = list(range(len(rows)))
        np.random.RandomState(seed).shuffle(order)
        rows = rows[order]
        y = None if y is None else y[order]
    files = [os.path.join(str(directory), folder.info["files"]["train"][r]) for r in rows]

    def part(which, shuffled):
        keep = _split(len(rows), validation_split, which, verbose)
        if not len(keep):
            what = f"{which} images" if subset == "both" else "images"
            raise CnnkitError(f"No {what} found in directory {directory}. Allowed formats: "
                              f"{ALLOWLIST_FORMATS}")
        return ImageDataset(folder.x_train, rows[keep], None if y is None else y[keep],
                            label_mode, len(names or ()), batch_size, shuffled, seed, names,
                            [files[i] for i in keep])

    if subset == "both":  # Keras does not shuffle the validation part's batches
        return [part("training", shuffle), part("validation", False)]
    return part(subset, shuffle)


def _check(labels, label_mode, class_names, color_mode, batch_size, image_size, interpolation,
           follow_links, crop, pad, data_format, format):
    """Keras's checks, in its words; then what cnnkit does not do, in one line each."""
    if labels not in ("inferred", None):
        if isinstance(labels, (list, tuple)):
            raise CnnkitError("image_dataset_from_directory: labels as a list is not supported "
                              "by cnnkit; valid: 'inferred' (the class folders) or None")
        raise CnnkitError("`labels` argument should be a list/tuple of integer labels, of the "
                          "same size as the number of image files in the target directory. If "
                          "you wish to infer the labels from the subdirectory names in the "
                          'target directory, pass `labels="inferred"`. If you wish to get a '
                          "dataset that only contains images (no labels), pass `labels=None`. "
                          f"Received: labels={_echo(labels)}")
    if label_mode not in ("int", "categorical", "binary", None):
        raise CnnkitError('`label_mode` argument must be one of "int", "categorical", '
                          f'"binary", or None. Received: label_mode={_echo(label_mode)}')
    if labels is None or label_mode is None:
        labels = label_mode = None
        if class_names is not None:
            raise CnnkitError("When `labels=None` (no labels), argument `class_names` cannot "
                              "be specified.")
    if color_mode == "rgba":
        raise CnnkitError("image_dataset_from_directory: color_mode='rgba' is not supported by "
                          "cnnkit; valid: 'rgb', 'grayscale'")
    if color_mode not in COLOR_MODES:
        raise CnnkitError('`color_mode` must be one of {"rgb", "rgba", "grayscale"}. '
                          f"Received: color_mode={_echo(color_mode)}")
    if batch_size is not None and (isinstance(batch_size, bool) or
                                   not isinstance(batch_size, int) or batch_size < 1):
        raise CnnkitError(f"batch_size={shown(batch_size)} is out of range; valid: an integer "
                          ">= 1 or None")
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    elif not isinstance(image_size, (list, tuple)) or len(image_size) != 2:
        raise CnnkitError("Invalid `image_size` value. Expected a tuple of 2 integers. "
                          f"Received: image_size={_echo(image_size)}")
    if not isinstance(interpolation, str) or interpolation.lower() not in KERAS_INTERPOLATIONS:
        raise CnnkitError("Argument `interpolation` should be one of "
                          f"{KERAS_INTERPOLATIONS}. Received: interpolation={_echo(interpolation)}")
    if interpolation.lower() != "bilinear":
        raise CnnkitError(f"image_dataset_from_directory: interpolation={interpolation!r} is "
                          "not supported by cnnkit, which resizes bilinear; valid: 'bilinear'")
    if format not in ("tf", "grain"):
        raise CnnkitError(f'`format` should be either "tf" or "grain". Received: '
                          f"format={_echo(format)}")
    for name, value in (("follow_links", follow_links), ("crop_to_aspect_ratio", crop),
                        ("pad_to_aspect_ratio", pad)):
        if value:
            raise CnnkitError(f"image_dataset_from_directory: {name}=True is not supported by "
                              f"cnnkit; valid: {name}=False")
    if data_format not in (None, "channels_last"):
        raise CnnkitError(f"image_dataset_from_directory: data_format={shown(data_format)} is "
                          "not supported by cnnkit; valid: 'channels_last'")
    return labels, label_mode, COLOR_MODES[color_mode], tuple(image_size)


def check_validation_split_arg(validation_split, subset, shuffle, seed):
    """Keras's rules for `validation_split` and `subset`, with its messages."""
    if validation_split and not 0 < validation_split < 1:
        raise CnnkitError("`validation_split` must be between 0 and 1, received: "
                          f"{_echo(validation_split)}")
    if (validation_split or subset) and not (validation_split and subset):
        raise CnnkitError("If `subset` is set, `validation_split` must be set, and inversely.")
    if subset not in ("training", "validation", "both", None):
        raise CnnkitError('`subset` must be either "training", "validation" or "both", '
                          f"received: {_echo(subset)}")
    if validation_split and shuffle and seed is None:
        raise CnnkitError("If using `validation_split` and shuffling the data, you must provide "
                          "a `seed` argument, to make sure that there is no overlap between the "
                          "training and validation subset.")


def _echo(value) -> str:
    """A value as Keras's messages write it (str, not repr), cut short on one line."""
    return clipped(value, quote=isinstance(value, (list, tuple, dict)))


def _index(folder, labels, class_names):
    """(rows of the decoded folder in Keras's file order, their labels or None, class names).

    Keras lists class by class (`class_names`' order), and in a class its folders in path
    order, each folder's files by name; with no labels, the whole tree folder by folder."""
    files = folder.info["files"]["train"]
    found = list(folder.class_names)
    if class_names is not None:
        if not set(class_names).issubset(found):
            raise CnnkitError("The `class_names` passed did not match the names of the "
                              "subdirectories of the target directory. Expected: "
                              f"{found} (or a subset of it), but received: "
                              f"class_names={_echo(class_names)}")
        names = list(class_names)
    else:
        names = found
    rank = {found.index(name): k for k, name in enumerate(names)}
    old = folder.y_train.numpy()
    keep = [i for i, f in enumerate(files)
            if f.lower().endswith(ALLOWLIST_FORMATS) and int(old[i]) in rank]

    def key(i):
        head, tail = os.path.split(files[i])
        return (0 if labels is None else rank[int(old[i])], head, tail)

    rows = np.array(sorted(keep, key=key), dtype=np.int64)
    if labels is None:
        return rows, None, None
    return rows, np.array([rank[int(old[i])] for i in rows], dtype=np.int32), names


def _split(n, validation_split, subset, verbose):
    """Indices of Keras's subset: validation is the last int(split * n) of the list."""
    if not validation_split:
        return np.arange(n)
    num_val = int(validation_split * n)
    if subset == "training":
        if verbose:
            print(f"Using {n - num_val} files for training.")
        return np.arange(n)[:-num_val]  # as Keras slices: nothing at all when num_val is 0
    if verbose:
        print(f"Using {num_val} files for validation.")
    return np.arange(n)[-num_val:] if num_val else np.arange(0)


class ImageDataset:
    """Batches of (float32 images (B, H, W, C) 0-255, labels) as numpy, or the images alone
    with `label_mode=None`; `len()` is the batches in one pass; `class_names` and
    `file_paths` as Keras's dataset has them. `map`, `take`, `prefetch` and `cache` as on a
    tf.data.Dataset (the images are decoded and in memory already)."""

    def __init__(self, images, rows, labels, label_mode, num_classes, batch_size, shuffle,
                 seed, class_names, file_paths):
        self._images, self._rows, self._labels = images, rows, labels  # uint8 (N, H, W, C)
        self._label_mode, self._num_classes = label_mode, num_classes
        self._batch_size, self._shuffle = batch_size, shuffle
        self._rng = np.random.default_rng(seed)
        self._limit, self._maps = None, ()
        self.class_names, self.file_paths = class_names, file_paths

    def __len__(self):
        n = len(self._rows) if self._batch_size is None else math.ceil(
            len(self._rows) / self._batch_size)
        return n if self._limit is None else min(n, self._limit)

    def __iter__(self):
        n = len(self._rows)
        order = self._rng.permutation(n) if self._shuffle else np.arange(n)
        step = self._batch_size or 1
        for b in range(len(self)):
            idx = order[b * step:(b + 1) * step]
            x = self._images[self._rows[idx]].numpy().astype(np.float32)  # (B, H, W, C)
            y = None if self._labels is None else self._encode(self._labels[idx])
            if self._batch_size is None:
                x, y = x[0], None if y is None else y[0]
            item = x if y is None else (x, y)
            for fn in self._maps:  # tf.data's map: the parts of a tuple as the arguments
                item = fn(*item) if isinstance(item, tuple) else fn(item)
            yield item

    def _encode(self, y):
        if self._label_mode == "categorical":
            return np.eye(self._num_classes, dtype=np.float32)[y]
        if self._label_mode == "binary":
            return y.astype(np.float32)[:, None]  # (B, 1), as Keras gives
        return y  # int32 (B,)

    def take(self, count):
        """The first `count` batches of each pass (a new dataset, as tf.data's take)."""
        return self._copy(_limit=count if self._limit is None else min(count, self._limit))

    def map(self, map_func, num_parallel_calls=None, deterministic=None, name=None):
        """A new dataset whose batches are `map_func(images, labels)` of these."""
        if not callable(map_func):
            raise CnnkitError(f"map takes a function; received {shown(map_func)}")
        return self._copy(_maps=(*self._maps, map_func))

    def _copy(self, **changes):
        out = ImageDataset.__new__(ImageDataset)
        out.__dict__.update(self.__dict__, **changes)
        return out

    def prefetch(self, buffer_size=None):
        return self

    def cache(self, filename=""):
        return self

    def __repr__(self):
        shape = tuple(self._images.shape[1:])
        return (f"<ImageDataset: {len(self._rows)} images {shape}, {len(self)} batches of "
                f"{self._batch_size}, labels {self._label_mode}>")
