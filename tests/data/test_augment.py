"""Keras-style augmentation on batches: Keras's geometry, random per image, reproducible."""
import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

import torch.nn.functional as F

from cnnkit.data.augment import Augmenter, sampling_grid
from cnnkit.errors import CnnkitError

SEED_002 = dict(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2, shear_range=0.2,
                zoom_range=0.2, horizontal_flip=True, fill_mode="nearest")


def batch(n=8, c=1, h=12, w=12, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def params(n=1, **given):
    p = {k: torch.zeros(n, dtype=torch.float64) for k in
         ("theta", "shift_x", "shift_y", "shear", "flip_h", "flip_v")}
    p["zoom_x"] = torch.ones(n, dtype=torch.float64)
    p["zoom_y"] = torch.ones(n, dtype=torch.float64)
    for k, v in given.items():
        p[k] = torch.full((n,), float(v), dtype=torch.float64)
    return p


def keras_reference(img, p, fill_mode, cval):
    """Keras's apply_affine_transform + flips for one (C, H, W) image, via scipy.ndimage."""
    c, h, w = img.shape
    th, sh = np.deg2rad(p["theta"]), np.deg2rad(p["shear"])
    rot = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
    shift = np.array([[1, 0, -p["shift_x"]], [0, 1, -p["shift_y"]], [0, 0, 1]])
    shear = np.array([[1, -np.sin(sh), 0], [0, np.cos(sh), 0], [0, 0, 1]])
    zoom = np.diag([p["zoom_x"], p["zoom_y"], 1.0])
    centre = np.array([[1, 0, w / 2 - 0.5], [0, 1, h / 2 - 0.5], [0, 0, 1]])
    m = centre @ rot @ shift @ shear @ zoom @ np.linalg.inv(centre)  # (x, y) coordinates
    swap = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    m = swap @ m @ swap  # ndimage indexes (row, col)
    mode = "grid-wrap" if fill_mode == "wrap" else fill_mode
    out = np.stack([ndi.affine_transform(ch, m[:2, :2], m[:2, 2], order=1, mode=mode, cval=cval) for ch in img])
    if p["flip_h"]:
        out = out[:, :, ::-1]
    if p["flip_v"]:
        out = out[:, ::-1, :]
    return out


@pytest.mark.parametrize("h, w", [(28, 28), (14, 10)])
def test_sampling_grid_equals_affine_grid(h, w):
    theta = torch.eye(2, 3).repeat(5, 1, 1) + 0.2 * torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(0))
    want = F.affine_grid(theta, [5, 1, h, w], align_corners=False)
    assert torch.allclose(sampling_grid(theta, h, w), want, atol=1e-6)


def test_identity_when_everything_is_off():
    x = batch()
    aug = Augmenter()
    assert aug.is_identity and aug(x) is x
    assert Augmenter(zoom_range=[1, 1]).is_identity
    assert not Augmenter(horizontal_flip=True).is_identity


@pytest.mark.parametrize("fill_mode", ["nearest", "reflect", "constant", "wrap"])
def test_matches_keras_transform_for_random_parameters(fill_mode):
    aug = Augmenter(**{**SEED_002, "fill_mode": fill_mode, "cval": 128.0, "vertical_flip": True})
    x = batch(n=16, c=2, h=14, w=10, seed=1)
    p = aug.random_params(16, 14, 10, torch.Generator().manual_seed(3))
    out = aug.apply(x, p)
    for i in range(16):
        pi = {k: float(v[i]) for k, v in p.items()}
        want = keras_reference(x[i].double().numpy(), pi, fill_mode, 128.0 / 255)
        assert np.abs(out[i].numpy() - want).max() < 2e-3, (i, pi)


def test_horizontal_flip_equals_torch_flip():
    x = batch(n=64)
    out = Augmenter(horizontal_flip=True, seed=0)(x)
    flipped = [torch.allclose(o, xi.flip(-1), atol=1e-6) for o, xi in zip(out, x)]
    kept = [torch.allclose(o, xi, atol=1e-6) for o, xi in zip(out, x)]
    assert all(f != k for f, k in zip(flipped, kept))  # each image is one or the other
    assert 16 < sum(flipped) < 48  # about half


@pytest.mark.parametrize("flags", [{"horizontal_flip": True}, {"vertical_flip": True},
                                   {"horizontal_flip": True, "vertical_flip": True}])
def test_flips_only_fast_path_equals_resampling(flags, monkeypatch):
    x = batch(n=32, c=3, h=9, w=7, seed=2).contiguous(memory_format=torch.channels_last)
    aug = Augmenter(**flags)
    p = aug.random_params(32, 9, 7, torch.Generator().manual_seed(5))
    fast = aug.apply(x, p)
    monkeypatch.setattr("cnnkit.data.augment._flips_only", lambda params: False)
    slow = aug.apply(x, p)
    assert torch.allclose(fast, slow, atol=1e-6)
    assert fast.is_contiguous(memory_format=torch.channels_last)
    assert not torch.equal(fast, x)


@pytest.mark.parametrize("k", [1, 3])
def test_shift_by_k_pixels_moves_content_and_fills_cval(k):
    x = batch(n=1, w=10)
    aug = Augmenter(fill_mode="constant", cval=255)
    right = aug.apply(x, params(shift_x=k))
    assert torch.allclose(right[..., k:], x[..., :-k], atol=1e-5)
    assert torch.allclose(right[..., :k], torch.ones(1), atol=1e-6)  # cval 255 -> 1.0
    down = Augmenter(fill_mode="constant", cval=0).apply(x, params(shift_y=k))
    assert torch.allclose(down[:, :, k:], x[:, :, :-k], atol=1e-5)
    assert down[:, :, :k].abs().max() == 0


def test_integer_shift_range_is_whole_pixels_like_keras():
    # Keras: width_shift_range=3 (an int) draws from {-2, ..., 2} pixels.
    x = batch(n=32, w=10)
    aug = Augmenter(width_shift_range=3, fill_mode="wrap", seed=0)
    out = aug(x)
    shifts = []
    for o, xi in zip(out, x):
        match = [s for s in range(-2, 3) if torch.allclose(o, xi.roll(s, dims=-1), atol=1e-5)]
        assert len(match) == 1
        shifts.append(match[0])
    assert set(shifts) == {-2, -1, 0, 1, 2}


def test_rotation_by_90_degrees_is_rot90():
    x = batch(n=2, c=3, h=9, w=9)
    out = Augmenter(fill_mode="constant").apply(x, params(n=2, theta=90))
    assert torch.allclose(out, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)  # counter-clockwise


def test_random_rotation_turns_content_by_the_drawn_angle():
    x = torch.zeros(16, 1, 33, 33)
    x[:, :, 15:18, 26:29] = 1  # a blob 11 pixels right of centre (16, 16)
    aug = Augmenter(rotation_range=90, fill_mode="constant")
    p = aug.random_params(16, 33, 33, torch.Generator().manual_seed(0))
    out = aug.apply(x, p)
    ys, xs = torch.meshgrid(torch.arange(33.0), torch.arange(33.0), indexing="ij")
    mass = out[:, 0].sum(dim=(1, 2))
    cx = (out[:, 0] * xs).sum(dim=(1, 2)) / mass - 16
    cy = (out[:, 0] * ys).sum(dim=(1, 2)) / mass - 16
    angle = torch.rad2deg(torch.atan2(-cy, cx))  # image y points down
    assert p["theta"].abs().max() <= 90 and p["theta"].std() > 20
    assert torch.allclose(angle, p["theta"].float(), atol=3)


def test_reproducible_by_seed_and_different_per_image():
    x = batch(n=1).expand(8, -1, -1, -1).contiguous()  # the same image eight times
    a = Augmenter(**SEED_002, seed=5)(x)
    b = Augmenter(**SEED_002, seed=5)(x)
    c = Augmenter(**SEED_002, seed=6)(x)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    for i in range(1, 8):
        assert not torch.allclose(a[0], a[i])
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    aug = Augmenter(**SEED_002)
    assert torch.equal(aug(x, generator=g1), aug(x, generator=g2))


def test_wrap_brings_opposite_edge_in_and_reflect_mirrors():
    x = batch(n=1, w=10)
    wrapped = Augmenter(fill_mode="wrap").apply(x, params(shift_x=2))
    assert torch.allclose(wrapped, x.roll(2, dims=-1), atol=1e-5)
    mirrored = Augmenter(fill_mode="reflect").apply(x, params(shift_x=2))
    assert torch.allclose(mirrored[..., :2], x[..., [1, 0]], atol=1e-5)  # b a | a b c ...
    nearest = Augmenter(fill_mode="nearest").apply(x, params(shift_x=2))
    assert torch.allclose(nearest[..., :2], x[..., :1].expand(-1, -1, -1, 2), atol=1e-5)


@pytest.mark.parametrize("fill_mode", ["nearest", "constant", "reflect", "wrap"])
def test_output_stays_in_range_with_same_shape_dtype_layout(fill_mode):
    x = batch(n=32, c=3, h=16, w=16).contiguous(memory_format=torch.channels_last)
    out = Augmenter(**{**SEED_002, "fill_mode": fill_mode, "cval": 200}, seed=0)(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert out.min() >= 0 and out.max() <= 1


def test_config_round_trip():
    aug = Augmenter(**{**SEED_002, "width_shift_range": [1, 2.5]}, seed=4)
    again = Augmenter.from_dict(aug.to_dict())
    assert again.to_dict() == aug.to_dict()
    x = batch()
    assert torch.equal(aug(x), again(x))
    assert "rotation_range=40.0" in repr(aug)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(fill_mode="nerest"), "unknown fill_mode 'nerest'; valid: nearest, constant, reflect, wrap"),
        (dict(rotation_range=-5), "rotation_range must be a number >= 0; got -5"),
        (dict(shear_range="big"), "shear_range must be a number >= 0"),
        (dict(width_shift_range=-0.1), "width_shift_range must be a number >= 0"),
        (dict(zoom_range=1.5), r"zoom_range as one number must be in \[0, 1\)"),
        (dict(zoom_range=[1.2, 0.8]), "0 < lo <= hi"),
        (dict(zoom_range=[0.8]), "a number or a \\[lo, hi\\] pair"),
        (dict(cval="white"), "cval must be a number"),
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs, message):
    with pytest.raises(CnnkitError, match=message) as err:
        Augmenter(**kwargs)
    assert "\n" not in str(err.value)


def test_unknown_config_key():
    with pytest.raises(CnnkitError, match="unknown augmentation option 'rotation'; valid: rotation_range"):
        Augmenter.from_dict({"rotation": 10})
