"""The warp primitive behind every geometric augmentation in cnnkit: a per-image affine map,
turned into one sampling grid for the whole batch, resampled by one `grid_sample` call with
Keras's fill modes. Used by the augmentation layers (RandomRotation, RandomZoom,
RandomTranslation) and by `cnnkit.data.augment` (`--augment`, ImageDataGenerator).

Coordinates: grid_sample's normalized [-1, 1] with align_corners=False, where pixel i sits
at (2i + 1) / size - 1. Keras's layers state their matrices on pixel indices instead (pixel i
at i); `pixel_theta` converts. Fill modes, as Keras 3's layers compute them (its
`map_coordinates`: each of the interpolation taps is fixed up on its own integer index):
  nearest   taps clamped to the edge pixels          (grid_sample 'border')
  reflect   d c b a | a b c d, about the image edge   (grid_sample 'reflection')
  constant  taps outside the image read fill_value, so edges blend toward it: the image is
            padded by one pixel of fill_value and sampled with 'border'
  wrap      taps taken modulo the size, so the seams blend: a 1-pixel circular pad, 'border'
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

def sampling_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`F.affine_grid(theta, ..., align_corners=False)` by broadcasting: (B, H, W, 2) as (x, y).

    Same numbers, but faster on CPU for small images than affine_grid's batched matmul with
    an inner dimension of 3 (bench/README.md).
    """
    kw = dict(device=theta.device, dtype=theta.dtype)
    xs = (torch.arange(width, **kw) * 2 + 1) / width - 1  # (W,) pixel centres in [-1, 1]
    ys = (torch.arange(height, **kw) * 2 + 1) / height - 1  # (H,)
    t = theta.unsqueeze(-1)  # (B, 2, 3, 1)
    gx = t[:, 0, 0, :, None] * xs + (t[:, 0, 1] * ys + t[:, 0, 2]).unsqueeze(-1)  # (B, H, W)
    gy = t[:, 1, 0, :, None] * xs + (t[:, 1, 1] * ys + t[:, 1, 2]).unsqueeze(-1)
    return torch.stack((gx, gy), dim=-1)


def pixel_theta(m: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 2, 3) `sampling_grid` matrices from (B, 2, 3) matrices on pixel indices, Keras's
    form: output pixel (x, y) reads input pixel (m00 x + m01 y + m02, m10 x + m11 y + m12).

    With p = ((g + 1) · size - 1) / 2 from normalized g and back, in float64 so that a 90°
    turn lands on pixel centres to float32's precision."""
    m = m.to(torch.float64)
    sx, sy = width / 2, height / 2  # p = s·g + (s - 0.5)
    ox, oy = sx - 0.5, sy - 0.5
    # input_norm = (m @ [s·g + o, 1] - o_in) / s_in, written out per row
    r0 = torch.stack((m[:, 0, 0], m[:, 0, 1] * (sy / sx),
                      (m[:, 0, 0] * ox + m[:, 0, 1] * oy + m[:, 0, 2] - ox) / sx), dim=-1)
    r1 = torch.stack((m[:, 1, 0] * (sx / sy), m[:, 1, 1],
                      (m[:, 1, 0] * ox + m[:, 1, 1] * oy + m[:, 1, 2] - oy) / sy), dim=-1)
    return torch.stack((r0, r1), dim=1)


def resample(x: torch.Tensor, grid: torch.Tensor, fill_mode: str = "reflect",
             fill_value: float = 0.0, interpolation: str = "bilinear") -> torch.Tensor:
    """Float (B, C, H, W) `x` sampled at `grid` ((B, H', W', 2) normalized (x, y)), outside
    points filled by `fill_mode` (see the module's docstring); the callers check the names.
    A channels_last `x` (the trainer's layout) gives a channels_last result."""
    out = _sample(x, grid, fill_mode, fill_value, interpolation)
    if x.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def _sample(x, grid, fill_mode, fill_value, interpolation):
    h, w = x.shape[-2:]
    if fill_mode in ("nearest", "reflect"):
        padding = "border" if fill_mode == "nearest" else "reflection"
        return F.grid_sample(x, grid, mode=interpolation, padding_mode=padding, align_corners=False)
    if fill_mode == "constant":
        # one ring of fill_value; g·size/(size+2) is the same point in the padded image
        padded = F.pad(x, (1, 1, 1, 1), value=float(fill_value))
        scale = torch.tensor([w / (w + 2), h / (h + 2)], dtype=grid.dtype, device=grid.device)
        return F.grid_sample(padded, grid * scale, mode=interpolation, padding_mode="border",
                             align_corners=False)
    # wrap: periodic pixel coordinates, sampled from a 1-pixel circular pad so seams blend
    px = torch.remainder((grid[..., 0] + 1) * (w / 2), w) + 0.5  # pixel coord in the padded image
    py = torch.remainder((grid[..., 1] + 1) * (h / 2), h) + 0.5
    grid = torch.stack((2 * (px + 0.5) / (w + 2) - 1, 2 * (py + 0.5) / (h + 2) - 1), dim=-1)
    padded = F.pad(x, (1, 1, 1, 1), mode="circular")
    return F.grid_sample(padded, grid, mode=interpolation, padding_mode="border",
                         align_corners=False)
