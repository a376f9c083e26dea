"""Mixup, CutMix and random erasing (cnnkit.data.mixing) on whole batches: the images, the mixed
targets, their sharing of the one loss stack, and exact repetition with a seed."""
from __future__ import annotations

import pytest
import torch

from cnnkit.data.batches import BatchLoader
from cnnkit.data.mixing import Mixing, cutmix_box
from cnnkit.errors import CnnkitError
from cnnkit.train.losses import LOSSES, correct_count, make_loss, one_hot

K = 10


def rows(ls: float = 0.0):
    return lambda ids: one_hot(ids, K, ls)


def flat_images(n: int = 8, h: int = 12, w: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (n, h, w, 1): image i is all 20 * i + 7, label i (so a pixel names its image)."""
    x = (torch.arange(n, dtype=torch.uint8) * 20 + 7).view(n, 1, 1, 1).expand(n, h, w, 1)
    return x.contiguous(), torch.arange(n)


def one_batch(mix, x, y, seed=0):
    loader = BatchLoader(x, y, batch_size=len(x), shuffle=False, seed=seed, mix=mix)
    return next(iter(loader))


@pytest.mark.parametrize("kw", [{"mixup": 0.4}, {"cutmix": 1.0}, {"mixup": 0.4, "cutmix": 1.0}])
@pytest.mark.parametrize("ls", [0.0, 0.1])
def test_mixed_targets_are_rows_of_probabilities_over_two_labels(kw, ls):
    x, y = flat_images()
    for seed in range(5):
        xb, t = one_batch(Mixing(**kw, targets=rows(ls)), x, y, seed)
        assert xb.shape == (8, 1, 12, 10) and t.shape == (8, K) and t.dtype == torch.float32
        assert torch.allclose(t.sum(1), torch.ones(8), atol=1e-6)
        # smoothing first, then mixing (timm's order): every class keeps at least ls / K
        assert t.min().item() == pytest.approx(ls / K, abs=1e-6)
        partner = y.flip(0)
        lam = t[torch.arange(8), y] - ls / K
        assert torch.allclose(lam + t[torch.arange(8), partner] - ls / K, torch.full((8,), 1 - ls),
                              atol=1e-6)


def test_mixup_image_is_lam_a_plus_one_minus_lam_b_of_the_uint8_pixels():
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (6, 5, 7, 3), dtype=torch.uint8, generator=g)
    y = torch.arange(6)
    for seed in range(4):
        xb, t = one_batch(Mixing(mixup=0.4, targets=rows()), x, y, seed)
        lam = t[0, 0].item()  # image 0 (label 0) is mixed with image 5 (label 5)
        assert 0 < lam < 1 and t[0, 5].item() == pytest.approx(1 - lam, abs=1e-6)
        a, b = x.permute(0, 3, 1, 2).double(), x.flip(0).permute(0, 3, 1, 2).double()
        expected = lam * a + (1 - lam) * b  # (B, C, H, W) in pixel units
        assert (xb.double() * 255 - expected).abs().max() < 1e-3  # float32 rounding only


def test_cutmix_lam_is_the_share_of_pixels_kept():
    x, y = flat_images()
    edges = 0
    for seed in range(40):
        xb, t = one_batch(Mixing(cutmix=1.0, targets=rows()), x, y, seed)
        pixels = (xb * 255).round().long()  # (B, 1, H, W): each pixel's value names its image
        own = (pixels == (y * 20 + 7).view(-1, 1, 1, 1)).double().mean(dim=(1, 2, 3))
        assert torch.allclose(own, t[torch.arange(8), y].double(), atol=1e-6)
        pasted = pixels != (y * 20 + 7).view(-1, 1, 1, 1)
        assert torch.equal(pasted, pasted[:1].expand_as(pasted))  # one box for the batch
        if pasted.any():
            rows_on, cols_on = pasted[0, 0].any(1), pasted[0, 0].any(0)
            box = pasted[0, 0][rows_on][:, cols_on]
            assert box.all()  # a rectangle
            edges += bool(rows_on[0] or rows_on[-1] or cols_on[0] or cols_on[-1])
    assert edges > 0  # boxes clipped at the image's edge were among them, lam still exact


def test_cutmix_box_is_centred_and_clipped_like_timm():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        top, bottom, left, right = cutmix_box(0.3, 28, 28, g)
        assert 0 <= top <= bottom <= 28 and 0 <= left <= right <= 28
        side = 2 * (int(28 * 0.7 ** 0.5) // 2)  # sqrt(1 - lam) of the side, halves about the centre
        assert bottom - top <= side and right - left <= side
        assert bottom - top == side or top == 0 or bottom == 28  # shorter only where clipped


def test_both_on_picks_cutmix_for_about_half_the_batches():
    x, y = flat_images()
    mix = Mixing(mixup=0.4, cutmix=1.0, targets=rows())
    kinds = []
    for seed in range(200):
        xb, _ = one_batch(mix, x, y, seed)
        values = (xb[0] * 255).round().unique()
        kinds.append(len(values) == 2 or torch.isin(values, torch.tensor([7.0, 147.0])).all())
    share = sum(kinds) / len(kinds)  # cutmix leaves pixels of exactly two images
    assert 0.38 < share < 0.62, share


def test_random_erasing_changes_one_box_per_image_and_nothing_else():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (64, 28, 28, 1), dtype=torch.uint8, generator=g)
    y = torch.zeros(64, dtype=torch.long)
    xb, yb = one_batch(Mixing(random_erasing=0.5), x, y, seed=2)
    assert torch.equal(yb, y)  # labels as they were
    before = x.permute(0, 3, 1, 2).float() / 255
    changed = ((xb - before).abs() > 1e-6)[:, 0]  # (B, H, W)
    erased = 0
    for m in changed:
        if not m.any():
            continue
        erased += 1
        rows_on, cols_on = m.any(1), m.any(0)
        h, w = int(rows_on.sum()), int(cols_on.sum())
        assert m[rows_on][:, cols_on].all()  # the whole box
        assert not m[~rows_on].any() and not m[:, ~cols_on].any()  # nothing outside it
        assert rows_on.nonzero().max() - rows_on.nonzero().min() + 1 == h  # contiguous
        assert cols_on.nonzero().max() - cols_on.nonzero().min() + 1 == w
        assert 0.015 * 784 <= h * w <= 0.40 * 784
    assert 20 <= erased <= 44  # p = 0.5 of 64 images
    none = one_batch(Mixing(random_erasing=0.0), x, y)[0]
    assert (none - before).abs().max() < 1e-6


def test_a_seed_repeats_every_draw_and_another_seed_differs():
    x, y = flat_images()
    x = x.clone()
    x[:, 3:6, 2:5] = 255  # some structure, so erasing and boxes show
    mix = Mixing(mixup=0.4, cutmix=1.0, random_erasing=0.5, targets=rows(0.1))
    a = BatchLoader(x, y, batch_size=4, seed=5, mix=mix)
    b = BatchLoader(x, y, batch_size=4, seed=5, mix=mix)
    c = BatchLoader(x, y, batch_size=4, seed=6, mix=mix)
    for epoch in (0, 3):  # an epoch replayed alone (resume) draws the same
        for loader in (a, b, c):
            loader.set_epoch(epoch)
        for (xa, ta), (xb, tb) in zip(a, b):
            assert torch.equal(xa, xb) and torch.equal(ta, tb)
    a.set_epoch(1)
    c.set_epoch(1)
    assert any(not torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))


def test_augmentation_runs_before_mixing_on_the_same_stream():
    from cnnkit.data.augment import Augmenter

    x, y = flat_images()
    aug = Augmenter(horizontal_flip=True)
    loader = BatchLoader(x, y, batch_size=8, shuffle=False, seed=0, augment=aug,
                         mix=Mixing(mixup=0.4, targets=rows()))
    xb, t = next(iter(loader))
    assert t.shape == (8, K) and xb.shape == (8, 1, 12, 10)


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("ls", [0.0, 0.2])
def test_the_loss_takes_rows_as_it_takes_ids(name, ls):
    """Unmixed rows (lam = 1) give each loss's own value: one loss stack, smoothing once."""
    k = 2 if name == "binary_crossentropy" else K
    logits = torch.randn(16, k, generator=torch.Generator().manual_seed(0))
    ids = torch.randint(0, k, (16,), generator=torch.Generator().manual_seed(1))
    loss = make_loss(name, k, "softmax", ls)
    assert loss(logits, one_hot(ids, k, ls)).item() == pytest.approx(loss(logits, ids).item(),
                                                                     rel=1e-5)


def test_a_mixed_target_is_half_the_loss_of_each_label_in_cross_entropy():
    logits = torch.randn(4, K, generator=torch.Generator().manual_seed(0))
    a, b = torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 6, 7])
    loss = make_loss("sparse_categorical_crossentropy", K, "softmax", 0.1)
    mixed = 0.3 * one_hot(a, K, 0.1) + 0.7 * one_hot(b, K, 0.1)
    assert loss(logits, mixed).item() == pytest.approx(
        0.3 * loss(logits, a).item() + 0.7 * loss(logits, b).item(), rel=1e-5)


def test_binary_one_unit_takes_the_mixed_rows_second_column():
    logits = torch.randn(6, 1)
    ids = torch.tensor([0, 1, 1, 0, 1, 0])
    loss = make_loss("binary_crossentropy", 2, "sigmoid", 0.1)
    mixed = 0.25 * one_hot(ids, 2, 0.1) + 0.75 * one_hot(1 - ids, 2, 0.1)
    expected = 0.25 * loss(logits, ids) + 0.75 * loss(logits, 1 - ids)
    assert loss(logits, mixed).item() == pytest.approx(expected.item(), rel=1e-5)


def test_train_accuracy_under_mixing_counts_the_dominant_label():
    logits = torch.eye(K)[[2, 5, 9]] * 5  # predicts 2, 5, 9
    t = torch.zeros(3, K)
    t[0, 2], t[0, 7] = 0.6, 0.4  # dominant 2: right
    t[1, 5], t[1, 1] = 0.3, 0.7  # dominant 1: wrong
    t[2, 9], t[2, 3] = 0.9, 0.1  # dominant 9: right
    assert correct_count(logits, t).item() == 2


@pytest.mark.parametrize("kw, shown", [({"mixup": -1}, "mixup=-1"),
                                       ({"cutmix": float("inf")}, "cutmix=inf"),
                                       ({"mixup": True}, "mixup=True"),
                                       ({"random_erasing": 1.5}, "random_erasing=1.5"),
                                       ({"random_erasing": "0.2"}, "random_erasing='0.2'")])
def test_bad_values_are_one_line_naming_the_value(kw, shown):
    with pytest.raises(CnnkitError) as e:
        Mixing(**kw, targets=rows())
    assert shown in str(e.value) and "valid:" in str(e.value) and "\n" not in str(e.value)
