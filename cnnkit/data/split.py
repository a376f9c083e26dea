"""Stratified train/validation(/test) splits and k-fold indices, reproducible by seed.

Everything returns int64 index tensors into the dataset's one image tensor, so a split costs
nothing until a batch is gathered. Indices within each part are sorted: the batch loader
shuffles anyway, and sorted gathers read memory in order.
scikit-learn does the stratified sampling (imported inside the functions: it is slow to import).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from cnnkit.errors import CnnkitError

PART_NAMES = {2: ("train", "validation"), 3: ("train", "validation", "test")}


def _labels(y) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim != 1 or len(y) == 0:
        raise CnnkitError(f"labels must be a non-empty 1-D sequence; got shape {tuple(y.shape)}")
    return y


def _class_label(cls, class_names: Sequence[str] | None) -> str:
    cls = cls.item() if isinstance(cls, np.generic) else cls
    if class_names is not None and 0 <= int(cls) < len(class_names):
        return f"class {int(cls)} ({class_names[int(cls)]!r})"
    return f"class {cls!r}"


def _check_fraction(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise CnnkitError(f"{what} must be a number strictly between 0 and 1; got {value!r}")
    return float(value)


def _as_tensor(idx: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.sort(np.asarray(idx, dtype=np.int64)))


def stratified_split(
    y, fractions: Sequence[float] = (0.8, 0.2), seed: int = 0, class_names: Sequence[str] | None = None
) -> tuple[torch.Tensor, ...]:
    """Split sample indices into parts of the given fractions, each holding every class in proportion.

    `fractions=(0.8, 0.2)` gives (train, validation); `(0.6, 0.2, 0.2)` gives
    (train, validation, test). The same `y` and `seed` always give the same parts; the parts are
    disjoint and together hold every index once.
    """
    labels = _labels(y)
    fractions = tuple(fractions)
    if len(fractions) not in PART_NAMES:
        raise CnnkitError(f"fractions must have 2 or 3 parts (train, validation[, test]); got {fractions!r}")
    for f in fractions:
        _check_fraction(f, "each split fraction")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise CnnkitError(f"split fractions must sum to 1; got {fractions!r} (sum {sum(fractions):g})")

    classes, counts = np.unique(labels, return_counts=True)
    parts = len(fractions)
    rare = int(np.argmin(counts))
    if counts[rare] < parts:
        raise CnnkitError(
            f"{_class_label(classes[rare], class_names)} has only {counts[rare]} sample(s); "
            f"a stratified {parts}-way split needs at least {parts} per class"
        )
    n = len(labels)
    for name, f in zip(PART_NAMES[parts], fractions):
        if int(f * n) < len(classes):
            raise CnnkitError(
                f"the {name} part ({f:g} of {n} samples) cannot hold one sample of each of the "
                f"{len(classes)} classes; use a larger fraction or more data"
            )

    from sklearn.model_selection import train_test_split

    everything = np.arange(n)
    try:
        # Split off the last part, then divide the rest: proportions stay exact in expectation.
        rest, last = train_test_split(
            everything, test_size=fractions[-1], random_state=seed, stratify=labels
        )
        if parts == 2:
            return _as_tensor(rest), _as_tensor(last)
        val_share = fractions[1] / (fractions[0] + fractions[1])
        train, val = train_test_split(
            rest, test_size=val_share, random_state=seed, stratify=labels[rest]
        )
    except ValueError as e:  # sklearn's own stratification limits, in one line
        raise CnnkitError(f"cannot split {fractions!r} stratified: {str(e).splitlines()[0]}") from None
    return _as_tensor(train), _as_tensor(val), _as_tensor(last)


def train_val_split(
    y, val_fraction: float = 0.2, seed: int = 0, class_names: Sequence[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, val_idx), stratified; seed 002's `train_test_split(test_size=0.2)`."""
    val_fraction = _check_fraction(val_fraction, "validation fraction")
    train, val = stratified_split(y, (1.0 - val_fraction, val_fraction), seed, class_names)
    return train, val


def kfold_indices(
    y, k: int = 5, seed: int = 0, stratified: bool = True, class_names: Sequence[str] | None = None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """k (train_idx, val_idx) pairs; every index is in exactly one validation fold."""
    labels = _labels(y)
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise CnnkitError(f"k-fold needs an integer k >= 2; got k={k!r}")
    from sklearn.model_selection import KFold, StratifiedKFold

    if stratified:
        classes, counts = np.unique(labels, return_counts=True)
        rare = int(np.argmin(counts))
        if k > counts[rare]:
            raise CnnkitError(
                f"k={k} folds need at least {k} samples per class, but "
                f"{_class_label(classes[rare], class_names)} has {counts[rare]}; use k <= {counts[rare]}"
            )
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    else:
        if k > len(labels):
            raise CnnkitError(f"k={k} folds need at least {k} samples; got {len(labels)}")
        splitter = KFold(n_splits=k, shuffle=True, random_state=seed)
    return [(_as_tensor(tr), _as_tensor(va)) for tr, va in splitter.split(np.zeros(len(labels)), labels)]
