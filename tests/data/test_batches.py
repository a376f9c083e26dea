"""Batches: one pass per epoch, reproducible order, model-ready float channels_last input."""
import pytest
import torch

from cnnkit.data.augment import Augmenter
from cnnkit.data.batches import BatchLoader, batch_indices, channel_stats, to_model_input
from cnnkit.errors import CnnkitError


def images(n=103, h=6, w=5, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, c), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
def test_batch_indices_cover_range_once(shuffle, drop_last):
    batches = list(batch_indices(103, 10, shuffle, torch.Generator().manual_seed(0), drop_last))
    assert [len(b) for b in batches] == [10] * 10 + ([] if drop_last else [3])
    seen = torch.cat(batches)
    assert len(set(seen.tolist())) == len(seen)  # no repeats
    if not drop_last:
        assert torch.equal(seen.sort().values, torch.arange(103))
    assert torch.equal(seen, torch.arange(len(seen))) != shuffle


def test_batch_indices_same_generator_seed_same_order():
    a = torch.cat(list(batch_indices(50, 8, True, torch.Generator().manual_seed(5))))
    b = torch.cat(list(batch_indices(50, 8, True, torch.Generator().manual_seed(5))))
    assert torch.equal(a, b)
    with pytest.raises(CnnkitError, match="batch_size must be a positive integer; got 0"):
        next(batch_indices(50, 0))


@pytest.mark.parametrize("c", [1, 3])
def test_to_model_input_unit_scale_layout(c):
    x = images(c=c)
    out = to_model_input(x)
    assert out.shape == (103, c, 6, 5) and out.dtype == torch.float32
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out, x.permute(0, 3, 1, 2).float() / 255, atol=1e-7)
    assert out.min() >= 0 and out.max() <= 1
    assert to_model_input(torch.full((1, 2, 2, 1), 255, dtype=torch.uint8)).max().item() == pytest.approx(1.0)


def test_to_model_input_standardize():
    x = images()
    mean, std = torch.tensor([0.2, 0.5, 0.7]), torch.tensor([0.3, 0.1, 0.25])
    out = to_model_input(x, "standardize", mean, std)
    want = (x.permute(0, 3, 1, 2).float() / 255 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    assert torch.allclose(out, want, atol=1e-5)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_to_model_input_errors():
    with pytest.raises(CnnkitError, match="unknown normalize 'unti'; valid: unit, standardize"):
        to_model_input(images(), "unti")
    with pytest.raises(CnnkitError, match="needs the per-channel mean and std"):
        to_model_input(images(), "standardize")
    with pytest.raises(CnnkitError, match="uint8 tensor"):
        to_model_input(images().float())


def test_channel_stats_match_direct_computation():
    x = images(n=300)
    mean, std = channel_stats(x, chunk=64)  # several chunks
    xf = x.double() / 255
    assert torch.allclose(mean.double(), xf.mean(dim=(0, 1, 2)), atol=1e-6)
    assert torch.allclose(std.double(), xf.std(dim=(0, 1, 2), unbiased=False), atol=1e-6)


def test_loader_covers_each_sample_once_per_epoch():
    x = images()
    y = torch.arange(103)  # labels double as sample ids
    loader = BatchLoader(x, y, batch_size=16, seed=0)
    assert len(loader) == 7
    batches = list(loader)
    assert len(batches) == 7
    ids = torch.cat([yb for _, yb in batches])
    assert torch.equal(ids.sort().values, y)
    for xb, yb in batches:  # each image travels with its own label
        assert xb.shape[1:] == (3, 6, 5) and xb.dtype == torch.float32
        assert xb.is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(xb, x[yb].permute(0, 3, 1, 2).float() / 255)
    assert len(BatchLoader(x, y, batch_size=16, drop_last=True)) == 6


def test_loader_epochs_differ_and_replay_by_set_epoch():
    loader = BatchLoader(images(), torch.arange(103), batch_size=10, seed=1)
    first = torch.cat([yb for _, yb in loader])
    second = torch.cat([yb for _, yb in loader])  # next epoch: a new order
    assert not torch.equal(first, second)
    loader.set_epoch(0)
    assert torch.equal(torch.cat([yb for _, yb in loader]), first)
    other_seed = BatchLoader(images(), torch.arange(103), batch_size=10, seed=2)
    assert not torch.equal(torch.cat([yb for _, yb in other_seed]), first)
    ordered = BatchLoader(images(), torch.arange(103), batch_size=10, shuffle=False)
    assert torch.equal(torch.cat([yb for _, yb in ordered]), torch.arange(103))


def test_loader_augmentation_reproducible_per_epoch():
    aug = Augmenter(rotation_range=30, width_shift_range=0.2, horizontal_flip=True)
    loader = BatchLoader(images(), torch.arange(103), batch_size=32, seed=0, augment=aug)
    a = [xb for xb, _ in loader]
    loader.set_epoch(0)
    b = [xb for xb, _ in loader]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    plain = [xb for xb, _ in BatchLoader(images(), torch.arange(103), batch_size=32, seed=0)]
    assert not torch.allclose(a[0], plain[0])  # augmentation did something
    assert all(xb.min() >= 0 and xb.max() <= 1 for xb in a)


def test_loader_standardize_from_training_statistics():
    x = images(n=500)
    loader = BatchLoader(x, torch.zeros(500, dtype=torch.int64), batch_size=64, normalize="standardize")
    whole = torch.cat([xb for xb, _ in loader])
    assert torch.allclose(whole.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(whole.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    aug = Augmenter(horizontal_flip=True)  # flips keep the statistics; augmented path standardizes too
    flipped = torch.cat([xb for xb, _ in BatchLoader(x, torch.zeros(500, dtype=torch.int64), 64,
                                                     normalize="standardize", augment=aug)])
    assert torch.allclose(flipped.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)


def test_loader_rejects_bad_input():
    with pytest.raises(CnnkitError, match="103 images but labels of shape"):
        BatchLoader(images(), torch.arange(5))
    with pytest.raises(CnnkitError, match="unknown normalize"):
        BatchLoader(images(), torch.arange(103), normalize="minmax")
