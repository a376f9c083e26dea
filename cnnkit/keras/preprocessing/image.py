"""Keras's `ImageDataGenerator`: `flow(x, y)` over arrays and `flow_from_directory(dir, ...)`
over one folder per class, batches of float32 (B, H, W, C) that `fit`, `evaluate` and
`predict` take. Augmentation is cnnkit's (cnnkit.data.augment, Keras's arguments, applied
per batch on tensors); `rescale` multiplies after it, as Keras does.

Keras resizes files with 'nearest' by default; cnnkit decodes and resizes them once
(bilinear, cnnkit.data.images) and caches nothing here, so a folder is read when the flow is
made: fine for the seeds' folders of hundreds of images.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from cnnkit.errors import CnnkitError, one_of
from cnnkit.errors import clipped

AUGMENT = ("rotation_range", "width_shift_range", "height_shift_range", "shear_range",
           "zoom_range", "horizontal_flip", "vertical_flip", "fill_mode", "cval")
CLASS_MODES = ("categorical", "binary", "sparse", "input", None)
COLOR_MODES = {"grayscale": 1, "rgb": 3}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp", ".gif")


class ImageDataGenerator:
    def __init__(self, rescale=None, validation_split=0.0, dtype=None, **kwargs):
        unknown = [k for k in kwargs if k not in AUGMENT]
        if unknown:
            raise CnnkitError(f"ImageDataGenerator: unknown or unsupported argument "
                              f"{unknown[0]}={clipped(kwargs[unknown[0]])}; valid: rescale, "
                              f"validation_split, {', '.join(AUGMENT)}")
        if not 0 <= validation_split < 1:
            raise CnnkitError(f"validation_split={validation_split!r} is out of range; valid: 0 <= x < 1")
        self.rescale, self.validation_split = rescale, float(validation_split)
        self.augment_args = kwargs
        from cnnkit.data.augment import Augmenter

        self.augmenter = Augmenter(**kwargs)  # checks every argument now

    def flow(self, x, y=None, batch_size=32, shuffle=True, seed=None, subset=None):
        x = np.asarray(x)
        if x.ndim != 4:
            raise CnnkitError(f"flow: x must be images (N, H, W, C); received shape {x.shape}")
        idx = self._subset(len(x), subset)
        return Iterator(self, x[idx], None if y is None else np.asarray(y)[idx], batch_size,
                        shuffle, seed, pixels=False)

    def flow_from_directory(self, directory, target_size=(256, 256), color_mode="rgb",
                            classes=None, class_mode="categorical", batch_size=32, shuffle=True,
                            seed=None, subset=None, interpolation="nearest", follow_links=False):
        if class_mode not in CLASS_MODES:
            raise one_of("class_mode", class_mode, [repr(m) for m in CLASS_MODES])
        if color_mode not in COLOR_MODES:
            raise one_of("color_mode", color_mode, list(COLOR_MODES))
        root = Path(directory)
        if not root.is_dir():
            raise CnnkitError(f"flow_from_directory: {str(directory)!r} is not a directory")
        names = list(classes) if classes else sorted(
            d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not names:
            raise CnnkitError(f"flow_from_directory: {root} has no class subfolders (one folder "
                              "per class, images inside)")
        files, labels = [], []
        for k, name in enumerate(names):
            folder = root / name
            if not folder.is_dir():
                raise CnnkitError(f"flow_from_directory: class folder {str(folder)!r} does not exist")
            for dirpath, _, filenames in os.walk(folder, followlinks=follow_links):
                for f in sorted(filenames):
                    if f.lower().endswith(IMAGE_SUFFIXES):
                        files.append(os.path.join(dirpath, f))
                        labels.append(k)
        if class_mode == "binary" and len(names) != 2:
            raise CnnkitError(f"class_mode='binary' needs 2 class folders; {root} has "
                              f"{len(names)} ({', '.join(names)})")
        idx = self._subset(len(files), subset, labels)
        from cnnkit.data.images import load_image

        h, w = target_size
        x = np.stack([load_image(files[i], channels=COLOR_MODES[color_mode], size=(h, w))
                      for i in idx]) if len(idx) else np.zeros((0, h, w, COLOR_MODES[color_mode]), np.uint8)
        y = np.asarray([labels[i] for i in idx], dtype=np.int64)
        it = Iterator(self, x, _encode(y, class_mode, len(names)), batch_size, shuffle, seed,
                      pixels=True, input_mode=class_mode == "input", no_labels=class_mode is None)
        it.class_indices = {name: k for k, name in enumerate(names)}
        it.classes, it.filenames = y, [os.path.relpath(files[i], root) for i in idx]
        it.num_classes, it.directory = len(names), str(root)
        print(f"Found {len(idx)} images belonging to {len(names)} classes.")
        return it

    def _subset(self, n, subset, labels=None):
        if subset is None:
            return list(range(n))
        if subset not in ("training", "validation"):
            raise one_of("subset", subset, ["'training'", "'validation'", "None"])
        if not self.validation_split:
            raise CnnkitError("subset= needs ImageDataGenerator(validation_split=...)")
        if labels is None:  # Keras: the first fraction of the arrays is the validation part
            cut = int(math.ceil(n * self.validation_split))
            return list(range(cut)) if subset == "validation" else list(range(cut, n))
        out = []  # per class folder, the first fraction of its files (as Keras splits)
        labels = np.asarray(labels)
        for k in np.unique(labels):
            members = np.flatnonzero(labels == k)
            cut = int(len(members) * self.validation_split)
            out += list(members[:cut] if subset == "validation" else members[cut:])
        return out


def _encode(y, class_mode, k):
    if class_mode == "categorical":
        return np.eye(k, dtype=np.float32)[y]
    if class_mode in ("binary", "sparse"):
        return y.astype(np.float32)
    return None


class Iterator:
    """Batches forever, as Keras's iterators: `next(it)`, `it[i]`, `len(it)` batches a pass."""

    def __init__(self, gen, x, y, batch_size, shuffle, seed, pixels, input_mode=False,
                 no_labels=False):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise CnnkitError(f"batch_size={batch_size!r} is out of range; valid: an integer >= 1")
        self.gen, self.x, self.y = gen, x, y
        self.batch_size, self.shuffle, self.pixels = batch_size, shuffle, pixels
        self.input_mode, self.no_labels = input_mode, no_labels or y is None
        self.n = self.samples = len(x)
        self.image_shape = tuple(x.shape[1:])
        self._rng = np.random.default_rng(seed)
        self._torch = torch.Generator().manual_seed(int(seed) if seed is not None else
                                                    int(self._rng.integers(2**31)))
        self._order, self._next = None, 0

    def __len__(self):
        return math.ceil(self.n / self.batch_size)

    def _epoch_order(self):
        return self._rng.permutation(self.n) if self.shuffle else np.arange(self.n)

    def __getitem__(self, i):
        if self._order is None:
            self._order = self._epoch_order()
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} of {len(self)}")
        return self._batch(self._order[i * self.batch_size:(i + 1) * self.batch_size])

    def __iter__(self):
        return self

    def __next__(self):
        if self.n == 0:
            raise CnnkitError("the generator holds no images")
        if self._order is None or self._next >= len(self):
            self._order, self._next = self._epoch_order(), 0
        batch = self[self._next]
        self._next += 1
        return batch

    def reset(self):
        self._order, self._next = None, 0

    def _batch(self, idx):
        xb = torch.from_numpy(np.asarray(self.x[idx], dtype=np.float32))  # (B, H, W, C)
        aug = self.gen.augmenter
        if not aug.is_identity:
            scale = 255.0 if self.pixels else 1.0  # cnnkit's augmenter works on [0, 1] pixels
            xb = aug((xb / scale).permute(0, 3, 1, 2), generator=self._torch).permute(0, 2, 3, 1) * scale
        if self.gen.rescale:
            xb = xb * float(self.gen.rescale)
        xb = xb.contiguous().numpy()
        if self.input_mode:
            return xb, xb
        if self.no_labels:
            return xb
        return xb, self.y[idx]
