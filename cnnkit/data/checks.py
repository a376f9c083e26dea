"""What the data itself says about a run: how many images each class has, and which test
images are near-duplicates of training images (cnnkit.runs.doctor reads both).

Near-duplicates are found by cheap keys per image: the image in grey, shrunk to at most 8×8 by
averaging, each cell cut to 16 grey levels, on two grids half a level apart. Two images share
a key on a grid when every cell falls in the same level. A copy whose grey levels moved a
little (re-saved, brightened by a few levels) mostly keeps its key on at least one grid: a
cell near a level's edge on one grid is mid-level on the other. It is missed only when two of
its cells sit near the edges of different grids; a cheap key finds most copies, not all.
Images that merely look alike (two different 1s) differ in some cell. Keys are made in
chunks, so a mapped set larger than memory is read once and never held.
"""
from __future__ import annotations

import numpy as np
import torch

from cnnkit.data import mapped

KEY_SIDE = 8  # cells per side of the shrunken image
LEVEL = 16  # grey values per level: 256 / 16 = 16 levels
_CHUNK = 4096  # images shrunk per step, at most
_CHUNK_BYTES = 4 << 20  # and at most this many bytes of images (large images: fewer per step;
#                        the sums take 4-8x the images' bytes)


def class_counts(y: torch.Tensor, num_classes: int) -> list[int]:
    """Images per class, every class listed (0 where it has none)."""
    return torch.bincount(y.to(torch.int64), minlength=num_classes).tolist()


def _edges(n: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's first and past-the-end pixel, as adaptive average pooling cuts them."""
    i = np.arange(cells)
    return (i * n) // cells, -((-(i + 1) * n) // cells)


def image_keys(x: torch.Tensor) -> tuple[list[bytes], list[bytes]]:
    """Two keys per image of `x` (uint8 (N, H, W, C)), one per grid: an equal key on either
    grid, near-identical images. Summed-area tables in numpy: one thread, whatever torch's
    thread pool is doing (on a busy machine its threads wait on each other far longer than
    this work takes)."""
    keys: tuple[list[bytes], list[bytes]] = ([], [])
    _, height, width, channels = x.shape
    (r0, r1), (c0, c1) = _edges(height, min(KEY_SIDE, height)), _edges(width, min(KEY_SIDE, width))
    area = ((r1 - r0)[:, None] * (c1 - c0)[None, :] * channels).astype(np.float32)  # (h, w)
    step = max(1, min(_CHUNK, _CHUNK_BYTES // max(1, height * width * channels)))
    total = np.int32 if 255 * height * width * channels < 2**31 else np.int64  # a whole image's sum
    for i in range(0, len(x), step):
        chunk = x[i:i + step]
        grey = chunk.numpy().sum(axis=3, dtype=total)  # (B, H, W)
        mapped.touched(chunk, chunk.numel())  # a mapped set's pages let go as batches' are
        table = np.zeros((len(grey), height + 1, width + 1), total)
        table[:, 1:, 1:] = grey.cumsum(axis=1, dtype=total).cumsum(axis=2, dtype=total)
        sums = (table[:, r1][:, :, c1] - table[:, r0][:, :, c1] - table[:, r1][:, :, c0]
                + table[:, r0][:, :, c0])  # (B, h, w): each cell's pixel sum
        small = (sums / area).reshape(len(grey), -1)  # (B, h*w) mean grey per cell
        for grid, shift in zip(keys, (0, LEVEL / 2)):
            cells = np.ascontiguousarray(((small + shift) // LEVEL).astype(np.uint8))
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
