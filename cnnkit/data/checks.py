"""What the data itself says about a run: how many images each class has, and which test
images are near-duplicates of training images (cnnkit.runs.doctor reads both).

Near-duplicates are found by a cheap key per image: the image in grey, shrunk to at most
8×8 by averaging, each cell kept at 16 levels. Two images with the same key are the same
picture up to small shifts of brightness, resizing or re-encoding; images that merely look
alike (two different 1s) differ in some cell. Keys are made in chunks, so a mapped set
larger than memory is read once and never held.
"""
from __future__ import annotations

import numpy as np
import torch

KEY_SIDE = 8  # cells per side of the shrunken image
LEVELS = 16  # grey levels per cell
_CHUNK = 4096  # images shrunk per step


def class_counts(y: torch.Tensor, num_classes: int) -> list[int]:
    """Images per class, every class listed (0 where it has none)."""
    return torch.bincount(y.to(torch.int64), minlength=num_classes).tolist()


def image_keys(x: torch.Tensor) -> list[bytes]:
    """One key per image of `x` (uint8 (N, H, W, C)): equal keys, near-identical images."""
    keys: list[bytes] = []
    side = (min(KEY_SIDE, x.shape[1]), min(KEY_SIDE, x.shape[2]))
    for i in range(0, len(x), _CHUNK):
        grey = x[i:i + _CHUNK].to(torch.float32).mean(dim=3)  # (B, H, W)
        small = torch.nn.functional.adaptive_avg_pool2d(grey[:, None], side)[:, 0]  # (B, h, w)
        cells = (small * (LEVELS / 256)).to(torch.uint8).numpy().reshape(len(grey), -1)
        keys += [row.tobytes() for row in np.ascontiguousarray(cells)]
    return keys


def cross_duplicates(x_train: torch.Tensor, x_test: torch.Tensor) -> list[tuple[int, int]]:
    """(test index, train index) for each test image with a near-duplicate in training."""
    seen: dict[bytes, int] = {}
    for j, key in enumerate(image_keys(x_train)):
        seen.setdefault(key, j)
    return [(i, seen[key]) for i, key in enumerate(image_keys(x_test)) if key in seen]
