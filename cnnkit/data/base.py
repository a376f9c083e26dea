"""The in-memory dataset every source returns: one uint8 image tensor plus labels per split."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Dataset:
    """Images as uint8 (N, H, W, C), labels as int64 (N,), an optional official test split.

    Every source (MNIST family, digits, folders, npz) returns one of these, so the rest of
    cnnkit never cares where the pixels came from.
    """

    name: str
    class_names: list[str]
    x_train: torch.Tensor  # (N, H, W, C) uint8
    y_train: torch.Tensor  # (N,) int64
    x_test: torch.Tensor | None = None  # (M, H, W, C) uint8
    y_test: torch.Tensor | None = None  # (M,) int64
    # an official validation split (a folder's validation/): runs validate on it, not on a
    # part of train
    x_val: torch.Tensor | None = None  # (V, H, W, C) uint8
    y_val: torch.Tensor | None = None  # (V,) int64
    source: str = ""  # where the data came from (directory, file or URL), for reports
    info: dict = field(default_factory=dict)  # e.g. skipped unreadable files

    @classmethod
    def from_splits(cls, name: str, class_names: list[str], tensors: dict, source: str,
                    info: dict) -> "Dataset":
        """From {x_train, y_train[, x_test, y_test][, x_validation, y_validation]}."""
        t = tensors.get
        return cls(name, class_names, t("x_train"), t("y_train"), t("x_test"), t("y_test"),
                   t("x_validation"), t("y_validation"), source, info)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C), as Keras states input shapes."""
        return tuple(int(s) for s in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def has_test(self) -> bool:
        return self.x_test is not None

    def __repr__(self) -> str:
        """One line, as a notebook shows it: the splits' sizes, the image shape and the
        classes, never the tensors (`Dataset('digits', 1,437 train / 360 test, 8×8×1, 10
        classes: 0, 1, ...)`)."""
        splits = [f"{len(x):,} {name}" for name, x in (("train", self.x_train),
                  ("validation", self.x_val), ("test", self.x_test)) if x is not None]
        h, w, c = self.image_shape
        names = ", ".join(map(str, self.class_names[:5])) + (", ..." * (self.num_classes > 5))
        return (f"Dataset({self.name!r}, {' / '.join(splits)}, {h}×{w}×{c}, "
                f"{self.num_classes} classes: {names})")

    def __post_init__(self) -> None:
        # Internal consistency: sources must hand over well-formed tensors.
        assert self.x_train.dtype == torch.uint8 and self.x_train.ndim == 4, self.x_train.shape
        assert self.y_train.dtype == torch.int64 and len(self.y_train) == len(self.x_train)
        if self.x_test is not None:
            assert self.y_test is not None and len(self.y_test) == len(self.x_test)
        if self.x_val is not None:
            assert self.y_val is not None and len(self.y_val) == len(self.x_val)
