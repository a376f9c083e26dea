"""The PyTorch side of the preprocessing and augmentation layers (specs in preprocessing.py):
NCHW images (or (B, D) vectors for Rescaling and Normalization), Keras 3's numbers.

The random layers act only in training (`self.training`) and are the identity at inference.
They draw one tensor of per-image parameters for the whole batch from torch's global RNG on
the CPU (so `torch.manual_seed`, and so a run's seed, decides them on every device) and
transform the batch in one go: a where() for flips, one grid_sample for the affine ones.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.layers.warp import pixel_theta, resample, sampling_grid

EPSILON = 1e-7  # keras.backend.epsilon(): Normalization's floor under sqrt(variance)
RESIZE_MODES = {"bilinear": "bilinear", "nearest": "nearest-exact", "bicubic": "bicubic"}


def _channels(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-channel (C,) tensor shaped to broadcast over NCHW images or (B, D) vectors."""
    return t.view(1, -1, 1, 1) if x.dim() == 4 and t.dim() == 1 else t


class Rescale(nn.Module):
    def __init__(self, scale, offset: float):
        super().__init__()
        self.offset = offset
        if isinstance(scale, list):  # one factor per channel: config, not a weight
            self.register_buffer("factors", torch.tensor(scale, dtype=torch.float32), False)
            self.scale = None
        else:
            self.scale = scale

    def forward(self, x):
        scale = self.scale if self.scale is not None else _channels(self.factors, x)
        return x * scale + self.offset


class Normalize(nn.Module):
    """(x - mean) / max(sqrt(variance), eps), or its inverse. Adapted statistics are weights
    (buffers mean, variance, count, saved with the model, as Keras's non-trainable weights);
    statistics given as arguments are part of the config, so their buffers are not saved."""

    def __init__(self, mean, variance, invert: bool, persistent: bool):
        super().__init__()
        self.invert = invert
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32), persistent)
        self.register_buffer("variance", torch.as_tensor(variance, dtype=torch.float32), persistent)
        if persistent:  # Keras's third weight; its adapt() leaves it 0, and so does cnnkit's
            self.register_buffer("count", torch.zeros((), dtype=torch.float32))

    def set_statistics(self, mean: list, variance: list) -> None:
        """adapt()'s statistics, into the buffers (one number each for axis=None)."""
        with torch.no_grad():
            self.mean.copy_(torch.tensor(mean).view_as(self.mean))
            self.variance.copy_(torch.tensor(variance).view_as(self.variance))

    def forward(self, x):
        mean = _channels(self.mean, x)
        std = _channels(self.variance, x).sqrt().clamp_min(EPSILON)
        return mean + x * std if self.invert else (x - mean) / std


class Resize(nn.Module):
    def __init__(self, height: int, width: int, interpolation: str, crop_to_aspect_ratio: bool):
        super().__init__()
        self.size, self.interpolation = (height, width), interpolation
        self.crop = crop_to_aspect_ratio

    def forward(self, x):
        if self.crop:  # Keras's centre crop to the target's aspect ratio, in its integer steps
            h, w = x.shape[-2:]
            th, tw = self.size
            ch = max(min(h, int(float(w * th) / tw)), 1)
            cw = max(min(w, int(float(h * tw) / th)), 1)
            top, left = int(float(h - ch) / 2), int(float(w - cw) / 2)
            x = x[:, :, top:top + ch, left:left + cw]
        align = False if self.interpolation in ("bilinear", "bicubic") else None
        return F.interpolate(x, size=self.size, mode=RESIZE_MODES[self.interpolation],
                             align_corners=align, antialias=False)


def _uniform(n: int, lower: float, upper: float) -> torch.Tensor:
    """(n,) float64 draws in [lower, upper) from torch's global CPU generator."""
    return torch.rand(n).double() * (upper - lower) + lower


class RandomFlip(nn.Module):
    def __init__(self, horizontal: bool, vertical: bool):
        super().__init__()
        self.horizontal, self.vertical = horizontal, vertical

    def forward(self, x):
        if not self.training:
            return x
        # Keras draws one flag per image and applies it to both axes of 'horizontal_and_vertical'
        flip = (torch.rand(x.shape[0]) <= 0.5).to(x.device).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
        if self.horizontal:
            x = torch.where(flip, x.flip(3), x)
        if self.vertical:
            x = torch.where(flip, x.flip(2), x)
        return x


class RandomAffine(nn.Module):
    """Rotation, zoom or translation: `matrices(n, h, w)` gives Keras's (n, 2, 3) pixel-index
    matrices (output pixel -> input pixel), and the batch is resampled through them at once."""

    def __init__(self, matrices, fill_mode: str, fill_value: float, interpolation: str):
        super().__init__()
        self.matrices = matrices
        self.fill_mode, self.fill_value, self.interpolation = fill_mode, fill_value, interpolation

    def forward(self, x):
        if not self.training:
            return x
        b, _, h, w = x.shape
        theta = pixel_theta(self.matrices(b, h, w), h, w).to(device=x.device, dtype=x.dtype)
        grid = sampling_grid(theta, h, w)  # (B, H, W, 2)
        return resample(x, grid, self.fill_mode, self.fill_value, self.interpolation)


def rotation_matrices(lower: float, upper: float):
    """Keras's RandomRotation: angles in [lower, upper) turns (fractions of 2π) about the
    centre ((W - 1) / 2, (H - 1) / 2); a positive angle turns content counter-clockwise."""
    def matrices(n, h, w):
        angle = torch.deg2rad(_uniform(n, lower * 360.0, upper * 360.0))  # (n,)
        cos, sin = torch.cos(angle), torch.sin(angle)
        cx, cy = 0.5 * (w - 1), 0.5 * (h - 1)
        rows = (cos, -sin, cx - cx * cos + cy * sin, sin, cos, cy - cx * sin - cy * cos)
        return torch.stack(rows, dim=-1).view(n, 2, 3)
    return matrices


def zoom_matrices(height: tuple[float, float], width: tuple[float, float] | None):
    """Keras's RandomZoom: scale 1 + factor about the centre (> 1 shows more: zooms out);
    without a width factor the width takes the height's draw, keeping the aspect ratio."""
    def matrices(n, h, w):
        zy = _uniform(n, 1.0 + height[0], 1.0 + height[1])
        zx = zy if width is None else _uniform(n, 1.0 + width[0], 1.0 + width[1])
        zero = torch.zeros_like(zy)
        rows = (zx, zero, (w - 1) / 2 * (1 - zx), zero, zy, (h - 1) / 2 * (1 - zy))
        return torch.stack(rows, dim=-1).view(n, 2, 3)
    return matrices


def translation_matrices(height: tuple[float, float], width: tuple[float, float]):
    """Keras's RandomTranslation: content moves by factor · size pixels (down, right > 0)."""
    def matrices(n, h, w):
        ty = _uniform(n, *height) * h  # Keras draws the height's shift first
        tx = _uniform(n, *width) * w
        zero, one = torch.zeros_like(tx), torch.ones_like(tx)
        return torch.stack((one, zero, -tx, zero, one, -ty), dim=-1).view(n, 2, 3)
    return matrices


class RandomContrast(nn.Module):
    """(x - mean) · factor + mean per image and channel, one factor per image, clipped to the
    value range."""

    def __init__(self, lower: float, upper: float, value_range: tuple[float, float]):
        super().__init__()
        self.lower, self.upper, self.value_range = lower, upper, value_range

    def forward(self, x):
        if not self.training:
            return x
        factor = _uniform(x.shape[0], 1.0 - self.lower, 1.0 + self.upper)
        factor = factor.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
        mean = x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        return ((x - mean) * factor + mean).clamp(*self.value_range)


__all__ = ["Rescale", "Normalize", "Resize", "RandomFlip", "RandomAffine", "RandomContrast",
           "rotation_matrices", "zoom_matrices", "translation_matrices"]


class Standardize(nn.Module):
    """(x - mean) / std per channel on NCHW images, the channels first reversed with `bgr`
    (keras.applications' preprocess_input: cnnkit.layers.imagenet). The constants are the
    layer's config, not weights: they are not saved with the model."""

    def __init__(self, mean, std, bgr: bool = False):
        super().__init__()
        self.bgr = bgr
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1),
                             False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1),
                             False)

    def forward(self, x):  # (B, 3, H, W), pixels 0..255
        if self.bgr:
            x = torch.flip(x, dims=(1,))  # RGB -> BGR: the order Caffe-trained weights expect
        return (x - self.mean) / self.std
