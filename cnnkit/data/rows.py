"""Splits of a memory-mapped dataset as index arrays: `take(x, idx)` instead of `x[idx]`.

`x[idx]` gathers: for a dataset held in memory that is cheap and gives the fastest batches
later, but for a mapped dataset (cnnkit.data.mapped) larger than memory it would copy most
of the set into memory, once per split. `take` keeps such a split as `Rows`: the mapped
images and an int64 index, gathered only batch by batch. Rows answers what the training and
evaluation paths ask of images (shape, dtype, len, slicing, index_select), always handing back
ordinary tensors of the rows asked for, and composes: `take(take(x, a), b)` is one index.
"""
from __future__ import annotations

import numpy as np
import torch

from cnnkit.data import mapped


class Rows:
    """uint8 images `base[index]` (N, H, W, C), gathered on demand; index None means all."""

    def __init__(self, base: torch.Tensor, index: torch.Tensor | None = None):
        self.base = base
        self.index = None if index is None else torch.as_tensor(index, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.base) if self.index is None else len(self.index)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.base.shape[1:]))

    @property
    def dtype(self) -> torch.dtype:
        return self.base.dtype

    @property
    def ndim(self) -> int:
        return self.base.ndim

    @property
    def device(self) -> torch.device:
        return self.base.device

    def dim(self) -> int:
        return self.base.ndim

    def numel(self) -> int:
        return len(self) * self.base[0].numel() if len(self) else 0

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def _gather(self, positions) -> torch.Tensor:
        """An ordinary tensor of the rows at `positions` (a slice, or indices into self)."""
        if self.index is None:
            rows = self.base[positions] if isinstance(positions, slice) \
                else self.base.index_select(0, positions)
        else:
            rows = self.base.index_select(0, self.index[positions])
        mapped.touched(self.base, rows.numel())
        return rows

    def __getitem__(self, key):
        """A slice or an int gives the images (a tensor); an index array gives Rows (a split
        of this split, still not gathered)."""
        if isinstance(key, slice):
            return self._gather(key)
        if isinstance(key, (int, np.integer)) or (isinstance(key, torch.Tensor) and key.ndim == 0):
            return self._gather(slice(int(key), int(key) + 1 or None))[0]
        idx = torch.as_tensor(np.asarray(key) if not isinstance(key, torch.Tensor) else key)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().reshape(-1)
        idx = idx.to(torch.int64)
        return Rows(self.base, idx if self.index is None else self.index[idx])

    def index_select(self, dim: int, idx: torch.Tensor) -> torch.Tensor:
        assert dim == 0, dim
        return self._gather(idx.to(torch.int64))

    def to(self, device=None, *args, **kwargs) -> "Rows":
        """Rows stay where their file is; batches are moved by whoever gathers them."""
        return self

    def contiguous(self) -> "Rows":
        return self

    def numpy(self) -> np.ndarray:
        """All rows as one array: a copy, for the callers that want one explicitly."""
        return self.materialize().numpy()

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def materialize(self) -> torch.Tensor:
        """All rows gathered into one in-memory tensor (as big as the split)."""
        return self._gather(slice(None))

    def __repr__(self) -> str:
        return f"Rows({tuple(self.shape)}, {self.dtype}, of a mapped set of {len(self.base)})"


def take(x, idx=None):
    """`x[idx]` (or x itself when idx is None) for in-memory images; for mapped images or
    Rows, a Rows of them that gathers nothing yet."""
    if isinstance(x, Rows):
        return x if idx is None else x[idx]
    if mapped.is_mapped(x):
        return Rows(x, idx)
    return x if idx is None else x[idx]


def is_images(x) -> bool:
    """A uint8 tensor or Rows: what the batch loader and the trainer take as images."""
    return isinstance(x, (torch.Tensor, Rows))


class _ArrayRows:
    """Rows indexed one image at a time as numpy arrays (what the HTML report reads)."""

    def __init__(self, rows: Rows):
        self.rows = rows
        self.shape = tuple(rows.shape)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i) -> np.ndarray:
        if np.ndim(i) == 0:
            return self.rows[int(i)].numpy()
        return self.rows[np.asarray(i)].numpy()  # the picked images only


def as_array(x):
    """np.asarray(x) for in-memory and mapped tensors (no copy: a CPU tensor's numpy view);
    for Rows, an object that gathers each image as it is indexed, x[i] -> (H, W, C)."""
    return _ArrayRows(x) if isinstance(x, Rows) else np.asarray(x)
