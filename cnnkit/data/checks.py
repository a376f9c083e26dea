"""What the data itself says about a run: how many images each class has, and which test
images are near-duplicates of training images (cnnkit.runs.doctor reads both).

Near-duplicates are found by cheap keys per image: the image in grey, shrunk to at most 8×8 by
averaging, each cell cut to 16 grey levels, on two grids half a level apart. Two images share
a key on a grid when every cell falls in the same level; a copy whose grey levels moved a
little (re-saved, brightened by a few levels, resized the same way) keeps its key on at least
one grid unless a cell sits right at a level's edge on both, which a change smaller than half
a level cannot do to one cell. Images that merely look alike (two different 1s) differ in some
cell. Keys are made in chunks, so a mapped set larger than memory is read once and never held.
"""
from __future__ import annotations

import numpy as np
import torch

KEY_SIDE = 8  # cells per side of the shrunken image
LEVEL = 16  # grey values per level: 256 / 16 = 16 levels
_CHUNK = 4096  # images shrunk per step


def class_counts(y: torch.Tensor, num_classes: int) -> list[int]:
    """Images per class, every class listed (0 where it has none)."""
    return torch.bincount(y.to(torch.int64), minlength=num_classes).tolist()


def image_keys(x: torch.Tensor) -> tuple[list[bytes], list[bytes]]:
    """Two keys per image of `x` (uint8 (N, H, W, C)), one per grid: an equal key on either
    grid, near-identical images."""
    keys: tuple[list[bytes], list[bytes]] = ([], [])
    side = (min(KEY_SIDE, x.shape[1]), min(KEY_SIDE, x.shape[2]))
    for i in range(0, len(x), _CHUNK):
        chunk = x[i:i + _CHUNK].permute(0, 3, 1, 2).to(torch.float32,
                                                    memory_format=torch.contiguous_format)
        # shrunk first, then grey: averaging commutes, and the shrunk image is small
        small = torch.nn.functional.adaptive_avg_pool2d(chunk, side).mean(dim=1)  # (B, h, w)
        small = small.reshape(len(chunk), -1)  # (B, h*w)
        for grid, shift in zip(keys, (0, LEVEL / 2)):
            cells = np.ascontiguousarray(((small + shift) / LEVEL).to(torch.uint8).numpy())
            grid += [row.tobytes() for row in cells]
    return keys


def cross_duplicates(x_train: torch.Tensor, x_test: torch.Tensor) -> list[tuple[int, int]]:
    """(test index, train index) for each test image with a near-duplicate in training."""
    seen: tuple[dict[bytes, int], dict[bytes, int]] = ({}, {})
    for grid, keys in zip(seen, image_keys(x_train)):
        for j, key in enumerate(keys):
            grid.setdefault(key, j)
    pairs = []
    for i, (a, b) in enumerate(zip(*image_keys(x_test))):
        j = seen[0].get(a, seen[1].get(b))
        if j is not None:
            pairs.append((i, j))
    return pairs
