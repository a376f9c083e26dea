"""Keras `ImageDataGenerator` augmentation, done per batch on tensors.

Same parameter names and meaning as Keras (rotation in degrees, shifts as a fraction of the
size or in pixels, shear angle in degrees, zoom range, flips, fill_mode, cval in 0-255 pixel
units), but instead of one scipy call per image and channel, each image gets one random affine
matrix and the whole batch is resampled by one sampling grid + `grid_sample` (bilinear, like
Keras's order-1 spline). Flips are folded into the same matrix, so they cost nothing extra.
The grid and the resampling are cnnkit.layers.warp's, shared with the augmentation layers.
shear_range is an angle in degrees, as in Keras 3 (so the seeds' shear_range=0.2 is slight).

Matrices follow Keras's construction: output pixel -> input pixel, about the image centre,
M = rotation @ shift @ shear @ zoom, then flips of the output. Keras's fill modes are
scipy.ndimage's, reproduced here on the sampling coordinates:
  nearest  -> clamp to the edge pixels (grid_sample 'border')
  reflect  -> mirror about the image edge, d c b a | a b c d (grid_sample 'reflection')
  constant -> cval wherever the sample point falls outside the pixel centres, as ndimage does
  wrap     -> coordinates taken modulo the size (truly periodic; scipy's own 'wrap' repeats
              with period size-1, a quirk Keras inherits and we do not copy)
Two documented-meaning choices: width_shift_range moves content horizontally and
height_shift_range vertically (Keras 3's legacy code swaps them for non-square images), and a
positive rotation angle turns content counter-clockwise (the ranges are symmetric, so the
random distribution is Keras's either way).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from cnnkit.errors import CnnkitError, one_of
from cnnkit.layers.warp import resample, sampling_grid  # noqa: F401  (sampling_grid: public here too)

FILL_MODES = ("nearest", "constant", "reflect", "wrap")  # ImageDataGenerator's order
OPTIONS = ("rotation_range", "width_shift_range", "height_shift_range", "shear_range", "zoom_range",
           "horizontal_flip", "vertical_flip", "fill_mode", "cval", "seed")  # Augmenter's arguments


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_range(name: str, value) -> float:
    if not _number(value) or value < 0 or not math.isfinite(value):
        raise CnnkitError(f"{name} must be a number >= 0; got {value!r}")
    return float(value)


def _check_shift(name: str, value):
    """Keras accepts a float (fraction if < 1, else pixels), an int (pixels) or a list of values."""
    if isinstance(value, (list, tuple)):
        if not value or not all(_number(v) for v in value):
            raise CnnkitError(f"{name} as a list must hold numbers; got {value!r}")
        return [float(v) for v in value]
    if not _number(value) or value < 0 or not math.isfinite(value):
        raise CnnkitError(f"{name} must be a number >= 0 or a list of numbers; got {value!r}")
    return value


def _check_zoom(value) -> tuple[float, float]:
    if _number(value):
        if not 0 <= value < 1:
            raise CnnkitError(f"zoom_range as one number must be in [0, 1); got {value!r}")
        return 1.0 - value, 1.0 + value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(_number(v) for v in value):
        lo, hi = float(value[0]), float(value[1])
        if not 0 < lo <= hi:
            raise CnnkitError(f"zoom_range [lo, hi] needs 0 < lo <= hi; got {list(value)!r}")
        return lo, hi
    raise CnnkitError(f"zoom_range must be a number or a [lo, hi] pair; got {value!r}")


def _uniform(n: int, lo: float, hi: float, g: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=g, dtype=torch.float64).mul_(hi - lo).add_(lo)


def _random_sign(n: int, g: torch.Generator | None) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=g).double().mul_(2).sub_(1)


def _sample_shift(spec, n: int, size: int, g: torch.Generator | None) -> torch.Tensor:
    """Shift in pixels per image, drawn exactly as Keras's get_random_transform draws it."""
    if isinstance(spec, list):  # one of the listed values, random sign; fractions if all < 1
        values = torch.tensor(spec, dtype=torch.float64)
        shift = values[torch.randint(0, len(values), (n,), generator=g)] * _random_sign(n, g)
        return shift * size if max(spec) < 1 else shift
    if isinstance(spec, int):  # np.random.choice(k): 0..k-1 pixels, random sign
        return torch.randint(0, spec, (n,), generator=g).double() * _random_sign(n, g)
    shift = _uniform(n, -spec, spec, g)
    return shift * size if spec < 1 else shift


def affine_matrices(params: dict[str, torch.Tensor], height: int, width: int) -> torch.Tensor:
    """(B, 2, 3) float32 `affine_grid` matrices (normalized coords) from per-image parameters.

    In centred pixel coordinates (x right, y down), output -> input like Keras:
        M = rotation @ shift @ shear @ zoom @ flips
    with rotation [[c, -s], [s, c]] (content turns counter-clockwise, y pointing down), the
    shift reading the input `shift` pixels behind (content moves by +shift), shear
    [[1, -sin a], [0, cos a]], zoom diag(zx, zy), flips diag(+-1, +-1) of the output.
    Multiplied out by hand: a dozen elementwise ops on (B,) vectors instead of batched 3x3
    products, which matters when the batch itself costs about a millisecond.
    Then rescaled to grid_sample's [-1, 1] (align_corners=False: pixel i sits at (2i+1)/size - 1,
    so the centre is Keras's size/2 - 0.5).
    """
    theta = torch.deg2rad(params["theta"])
    shear = torch.deg2rad(params["shear"])
    cos, sin = torch.cos(theta), torch.sin(theta)
    sx = params["zoom_x"] * (1 - 2 * params["flip_h"])  # zoom and flip: one diagonal
    sy = params["zoom_y"] * (1 - 2 * params["flip_v"])
    # rotation @ shear = [[c, -sin(t + a)], [s, cos(t + a)]]
    m00, m01 = cos * sx, -torch.sin(theta + shear) * sy
    m10, m11 = sin * sx, torch.cos(theta + shear) * sy
    # rotation @ (-shift): the translation part, in pixels
    t0 = -(cos * params["shift_x"] - sin * params["shift_y"])
    t1 = -(sin * params["shift_x"] + cos * params["shift_y"])
    # Pixels -> [-1, 1]: x scales by 2/W, y by 2/H.
    rows = (m00, m01 * (height / width), t0 * (2 / width), m10 * (width / height), m11, t1 * (2 / height))
    return torch.stack(rows, dim=-1).to(torch.float32).view(-1, 2, 3)


def _flips_only(params: dict[str, torch.Tensor]) -> bool:
    """No rotation, shift, shear or zoom in any image of the batch (flips may be on)."""
    moved = torch.stack([params[k] for k in ("theta", "shift_x", "shift_y", "shear")]).any()
    zoomed = torch.stack([params["zoom_x"], params["zoom_y"]]).ne(1).any()
    return not bool(moved or zoomed)


class Augmenter:
    """Random Keras-style geometric augmentation of float (B, C, H, W) batches in [0, 1].

    >>> aug = Augmenter(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
    ...                 shear_range=0.2, zoom_range=0.2, horizontal_flip=True, seed=0)
    >>> xb = aug(xb)   # or aug(xb, generator=g) to draw from your own torch.Generator
    """

    def __init__(
        self,
        rotation_range: float = 0.0,
        width_shift_range: float | int | Sequence[float] = 0.0,
        height_shift_range: float | int | Sequence[float] = 0.0,
        shear_range: float = 0.0,
        zoom_range: float | Sequence[float] = 0.0,
        horizontal_flip: bool = False,
        vertical_flip: bool = False,
        fill_mode: str = "nearest",
        cval: float = 0.0,
        seed: int | None = None,
    ):
        self.rotation_range = _check_range("rotation_range", rotation_range)
        self.width_shift_range = _check_shift("width_shift_range", width_shift_range)
        self.height_shift_range = _check_shift("height_shift_range", height_shift_range)
        self.shear_range = _check_range("shear_range", shear_range)
        self.zoom_range = zoom_range
        self._zoom = _check_zoom(zoom_range)
        self.horizontal_flip = bool(horizontal_flip)
        self.vertical_flip = bool(vertical_flip)
        if fill_mode not in FILL_MODES:
            raise one_of("fill_mode", fill_mode, FILL_MODES)
        self.fill_mode = fill_mode
        if not _number(cval) or not math.isfinite(cval):
            raise CnnkitError(f"cval must be a number (pixel value, 0-255); got {cval!r}")
        self.cval = float(cval)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise CnnkitError(f"seed must be an integer or None; got {seed!r}")
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed) if seed is not None else None

    @property
    def is_identity(self) -> bool:
        return not (
            self.rotation_range or self.width_shift_range or self.height_shift_range
            or self.shear_range or self._zoom != (1.0, 1.0)
            or self.horizontal_flip or self.vertical_flip
        )

    def random_params(
        self, n: int, height: int, width: int, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-image parameters (float64 (n,) each): theta/shear in degrees, shifts in pixels."""
        g = generator if generator is not None else self._generator
        zeros = torch.zeros(n, dtype=torch.float64)
        r, s = self.rotation_range, self.shear_range
        lo, hi = self._zoom
        return {
            "theta": _uniform(n, -r, r, g) if r else zeros,
            "shift_x": _sample_shift(self.width_shift_range, n, width, g) if self.width_shift_range else zeros,
            "shift_y": _sample_shift(self.height_shift_range, n, height, g) if self.height_shift_range else zeros,
            "shear": _uniform(n, -s, s, g) if s else zeros,
            # Keras draws the two zoom factors independently (zx, zy), so aspect ratio changes too.
            "zoom_x": _uniform(n, lo, hi, g) if (lo, hi) != (1.0, 1.0) else zeros + 1,
            "zoom_y": _uniform(n, lo, hi, g) if (lo, hi) != (1.0, 1.0) else zeros + 1,
            "flip_h": (torch.rand(n, generator=g) < 0.5).double() if self.horizontal_flip else zeros,
            "flip_v": (torch.rand(n, generator=g) < 0.5).double() if self.vertical_flip else zeros,
        }

    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Resample float (B, C, H, W) `x` with the given per-image parameters."""
        if _flips_only(params):  # pixels land on pixel centres: exact mirrors, no resampling
            for key, dim in (("flip_h", 3), ("flip_v", 2)):
                mask = params[key].to(device=x.device, dtype=torch.bool)
                if mask.any():
                    x = torch.where(mask.view(-1, 1, 1, 1), x.flip(dim), x)
            return x
        b, c, h, w = x.shape
        theta = affine_matrices(params, h, w).to(device=x.device, dtype=x.dtype)
        grid = sampling_grid(theta, h, w)  # (B, H, W, 2) as (x, y)
        if self.fill_mode == "constant":
            out = resample(x, grid, "nearest")
            # ndimage 'constant' (ImageDataGenerator's, unlike the layers'): cval wherever the
            # sample point falls outside the span of pixel centres, no blending toward it.
            px = (grid[..., 0] + 1) * (w / 2) - 0.5
            py = (grid[..., 1] + 1) * (h / 2) - 0.5
            eps = 1e-3
            outside = (px < -eps) | (px > w - 1 + eps) | (py < -eps) | (py > h - 1 + eps)  # (B, H, W)
            # (where() keeps resample's channels_last layout)
            return torch.where(outside.unsqueeze(1), torch.tensor(self.cval / 255, dtype=x.dtype), out)
        return resample(x, grid, self.fill_mode)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A randomly transformed copy of float (B, C, H, W) `x`; `x` itself when nothing is on."""
        if self.is_identity:
            return x
        if not x.is_floating_point() or x.ndim != 4:
            raise CnnkitError(f"augmentation needs a float (B, C, H, W) batch; got {x.dtype} {tuple(x.shape)}")
        return self.apply(x, self.random_params(x.shape[0], x.shape[2], x.shape[3], generator))

    def to_dict(self) -> dict:
        """The constructor's arguments, JSON-ready (lists, not tuples)."""
        values = {k: getattr(self, k) for k in OPTIONS}
        return {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in values.items()}

    @classmethod
    def from_dict(cls, config: dict) -> "Augmenter":
        for key in config:
            if key not in OPTIONS:
                raise one_of("augmentation option", key, OPTIONS)
        return cls(**config)

    def __repr__(self) -> str:
        on = {k: v for k, v in self.to_dict().items() if v not in (0, 0.0, False, None, "nearest")}
        return "Augmenter(" + ", ".join(f"{k}={v!r}" for k, v in on.items()) + ")"
