"""Stratified splits and k-fold: proportions kept, reproducible by seed, every index once."""
import numpy as np
import pytest
import torch

from cnnkit.data.split import kfold_indices, stratified_split, train_val_split
from cnnkit.errors import CnnkitError

# Imbalanced labels, as real data often is: 500 / 300 / 150 / 50 samples.
COUNTS = {0: 500, 1: 300, 2: 150, 3: 50}
Y = torch.tensor(np.random.default_rng(0).permutation(np.repeat(list(COUNTS), list(COUNTS.values()))))


def class_counts(idx):
    return torch.bincount(Y[idx], minlength=len(COUNTS)).tolist()


@pytest.mark.parametrize("fractions", [(0.8, 0.2), (0.6, 0.2, 0.2), (0.7, 0.15, 0.15)])
def test_parts_are_disjoint_complete_and_stratified(fractions):
    parts = stratified_split(Y, fractions, seed=0)
    assert len(parts) == len(fractions)
    together = torch.cat(parts)
    assert together.dtype == torch.int64
    assert torch.equal(together.sort().values, torch.arange(len(Y)))  # each index exactly once
    for part, frac in zip(parts, fractions):
        assert abs(len(part) - frac * len(Y)) <= len(fractions)
        for cls, n in COUNTS.items():  # every class in proportion, to within a sample or two
            assert abs(class_counts(part)[cls] - frac * n) <= 2, (cls, class_counts(part))


def test_same_seed_same_split_other_seed_other_split():
    a = stratified_split(Y, (0.6, 0.2, 0.2), seed=3)
    b = stratified_split(Y, (0.6, 0.2, 0.2), seed=3)
    c = stratified_split(Y, (0.6, 0.2, 0.2), seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not torch.equal(a[1], c[1])


def test_train_val_split_accepts_numpy_and_lists():
    train, val = train_val_split(Y.numpy(), 0.25, seed=1)
    assert len(val) == 250 and len(train) == 750
    assert all(abs(got - n / 4) <= 1 for got, n in zip(class_counts(val), COUNTS.values()))
    t2, v2 = train_val_split(Y.tolist(), 0.25, seed=1)
    assert torch.equal(v2, val)


@pytest.mark.parametrize(
    "fractions, message",
    [
        ((0.0, 1.0), "strictly between 0 and 1"),
        ((1.0, 0.0), "strictly between 0 and 1"),
        ((0.7, 0.2), "must sum to 1"),
        ((0.5, 0.3, 0.3), "must sum to 1"),
        ((1.0,), "2 or 3 parts"),
    ],
)
def test_bad_fractions_are_one_line_errors(fractions, message):
    with pytest.raises(CnnkitError, match=message) as err:
        stratified_split(Y, fractions)
    assert "\n" not in str(err.value)


def test_bad_validation_fraction():
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(CnnkitError, match="validation fraction"):
            train_val_split(Y, bad)


def test_class_too_small_to_stratify_is_named():
    y = torch.tensor([0] * 20 + [1] * 20 + [2] * 2)
    stratified_split(y, (0.5, 0.5))  # two per class is enough for two parts
    with pytest.raises(CnnkitError, match=r"class 2 \('shirt'\) has only 2 sample\(s\).*3-way"):
        stratified_split(y, (0.6, 0.2, 0.2), class_names=["a", "b", "shirt"])


def test_part_too_small_for_all_classes():
    y = torch.arange(10).repeat(3)  # 10 classes x 3
    with pytest.raises(CnnkitError, match="validation part .* 10 classes"):
        stratified_split(y, (0.9, 0.1))


@pytest.mark.parametrize("stratified", [True, False])
def test_kfold_every_index_validated_exactly_once(stratified):
    folds = kfold_indices(Y, k=5, seed=0, stratified=stratified)
    assert len(folds) == 5
    seen = torch.cat([val for _, val in folds])
    assert torch.equal(seen.sort().values, torch.arange(len(Y)))
    for train, val in folds:
        assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(len(Y)))
        if stratified:
            assert class_counts(val) == [n // 5 for n in COUNTS.values()]


def test_kfold_reproducible_by_seed():
    a, b, c = (kfold_indices(Y, 4, seed=s) for s in (7, 7, 8))
    assert all(torch.equal(x[1], y[1]) for x, y in zip(a, b))
    assert not torch.equal(a[0][1], c[0][1])


def test_kfold_errors():
    with pytest.raises(CnnkitError, match="k >= 2"):
        kfold_indices(Y, k=1)
    with pytest.raises(CnnkitError, match=r"class 3 has 50; use k <= 50"):
        kfold_indices(Y, k=51)
    with pytest.raises(CnnkitError, match="at least 2000 samples"):
        kfold_indices(Y, k=2000, stratified=False)
