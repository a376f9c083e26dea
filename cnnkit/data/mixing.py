"""Label-mixing augmentation on whole batches: mixup, CutMix and random erasing.

    mix = Mixing(mixup=0.2, cutmix=1.0, random_erasing=0.25, targets=one_hot_rows)
    xb, targets = mix(xb, yb, generator=g)   # xb float (B, C, H, W) in [0, 1], yb ids (B,)

As timm's `Mixup` in its default batch mode: one lam per batch, drawn from Beta(alpha, alpha),
and every image mixed with the batch's mirror order (`x.flip(0)`), so the cost is one
elementwise blend (mixup) or one box copy (CutMix) per batch, never a Python loop over images.
With both on, each batch picks one of the two with probability 0.5 (timm's switch_prob). The
targets are `lam * targets(y) + (1 - lam) * targets(y.flip(0))`, where `targets` turns class ids
into rows (B, K): the training loss's own one-hot rows with its label smoothing, so smoothing and
mixing compose as in timm (the smoothed one-hots are mixed). CutMix's lam is corrected to the box
actually pasted (clipped at the image edge), so a target's share is the share of its pixels.

Random erasing (Zhong et al. 2017; timm's RandomErasing, mode 'pixel') replaces, in each image
with probability p, one box of 2%-33% of the image area and aspect ratio 0.3-3.3 (log-uniform)
by uniform noise in [0, 1]; the box is clipped to the image instead of timm's up-to-10 redraws.
Labels are left as they are. It runs after mixing, as in timm.

Every draw comes from the `generator` given (BatchLoader passes its per-epoch augmentation
stream), so a seeded run repeats exactly and resumes exactly. The checks import no torch
(cnnkit.train.config reads them to check a configuration before torch is loaded).
"""
from __future__ import annotations

import math
from collections.abc import Callable

from cnnkit.errors import out_of_range

SWITCH_PROB = 0.5  # timm's: with mixup and CutMix both on, CutMix for half the batches
ERASE_AREA = (0.02, 1 / 3)  # timm's RandomErasing defaults: area fraction of the box
ERASE_RATIO = (0.3, 1 / 0.3)  # and its aspect ratio, drawn log-uniform


def check_alpha(name: str, value) -> float:
    """A Beta(alpha, alpha) parameter: a number >= 0, 0 meaning off."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise out_of_range(name, value, f"a number >= 0 (the Beta distribution's alpha; 0: off; "
                           f"{'0.2' if name == 'mixup' else '1.0'} is usual)")
    return float(value)


def check_probability(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= 1:
        raise out_of_range(name, value, "a probability 0 <= p <= 1 (0: off; 0.25 is usual)")
    return float(value)


def _beta(alpha: float, g: torch.Generator | None) -> float:
    """One draw of Beta(alpha, alpha), from torch's generator (numpy's Beta, seeded from it:
    torch has no seeded Beta sampler)."""
    import numpy as np
    import torch

    seed = int(torch.randint(0, 2**62, (), generator=g))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def cutmix_box(lam: float, height: int, width: int, g: torch.Generator | None):
    """(top, bottom, left, right) of a box of about (1 - lam) of the image, centred at a
    uniform random pixel and clipped at the edges (timm's rand_bbox)."""
    import torch

    ratio = math.sqrt(1 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy = int(torch.randint(0, height, (), generator=g))
    cx = int(torch.randint(0, width, (), generator=g))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return top, bottom, left, right


def mixup(x: torch.Tensor, lam: float) -> torch.Tensor:
    """lam * x + (1 - lam) * x.flip(0): each image blended with its partner."""
    return x.mul(lam).add_(x.flip(0), alpha=1 - lam)


def cutmix(x: torch.Tensor, lam: float, g: torch.Generator | None) -> tuple[torch.Tensor, float]:
    """`x` with one box pasted from the partner images, and lam corrected to the area kept."""
    h, w = x.shape[-2:]
    top, bottom, left, right = cutmix_box(lam, h, w, g)
    out = x.clone()
    out[..., top:bottom, left:right] = x.flip(0)[..., top:bottom, left:right]
    return out, 1 - (bottom - top) * (right - left) / (h * w)


def erase_boxes(n: int, height: int, width: int, p: float, g: torch.Generator | None):
    """Per image (n,): whether it is erased, and its box's top, left, height and width."""
    import torch

    on = torch.rand(n, generator=g) < p
    area = torch.empty(n).uniform_(*ERASE_AREA, generator=g) * (height * width)
    log_ratio = torch.empty(n).uniform_(*map(math.log, ERASE_RATIO), generator=g)
    ratio = log_ratio.exp()
    bh = (area * ratio).sqrt().round().clamp(1, height).long()
    bw = (area / ratio).sqrt().round().clamp(1, width).long()
    top = (torch.rand(n, generator=g) * (height - bh + 1)).long()
    left = (torch.rand(n, generator=g) * (width - bw + 1)).long()
    return on, top, left, bh, bw


def random_erase(x: torch.Tensor, p: float, g: torch.Generator | None) -> torch.Tensor:
    """Float (B, C, H, W) `x` with one box of uniform noise in each image, with probability p.
    Noise is drawn for the erased images only (a quarter of the batch at p = 0.25)."""
    import torch

    b, c, h, w = x.shape
    on, top, left, bh, bw = erase_boxes(b, h, w, p, g)
    picked = on.nonzero().flatten()
    if len(picked) == 0:
        return x
    top, left, bh, bw = (t[picked].to(x.device).view(-1, 1, 1) for t in (top, left, bh, bw))
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + bh) & (cols >= left) & (cols < left + bw)  # (E, H, W)
    noise = torch.rand((len(picked), c, h, w), generator=g).to(device=x.device, dtype=x.dtype)
    picked = picked.to(x.device)
    out = x.clone()
    out[picked] = torch.where(inside.unsqueeze(1), noise, x[picked])
    return out


class Mixing:
    """Mixup and/or CutMix (Beta alphas, 0: off) and random erasing (a probability) of float
    batches; `targets(ids) -> rows (B, K)` makes the rows that are mixed (the loss's one-hots,
    label smoothing included). Called as `mix(x, y, generator=g) -> (x, targets)`: targets are
    rows when a mix was applied, else `y` as given."""

    def __init__(self, mixup: float = 0.0, cutmix: float = 0.0, random_erasing: float = 0.0,
                 targets: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.mixup = check_alpha("mixup", mixup)
        self.cutmix = check_alpha("cutmix", cutmix)
        self.random_erasing = check_probability("random_erasing", random_erasing)
        if (self.mixup or self.cutmix) and targets is None:
            raise ValueError("mixup and cutmix need `targets`, ids -> rows of class probabilities")
        self.targets = targets

    @property
    def mixes_labels(self) -> bool:
        return bool(self.mixup or self.cutmix)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None):
        import torch

        g = generator
        if self.mixes_labels and len(x) > 0:
            use_cutmix = self.cutmix and (not self.mixup or float(torch.rand((), generator=g)) < SWITCH_PROB)
            if use_cutmix:
                x, lam = cutmix(x, _beta(self.cutmix, g), g)
            else:
                lam = _beta(self.mixup, g)
                x = mixup(x, lam)
            rows = self.targets(y)
            y = rows.mul(lam).add_(rows.flip(0), alpha=1 - lam)  # (B, K), each row sums to 1
        if self.random_erasing and len(x) > 0:
            x = random_erase(x, self.random_erasing, g)
        return x, y

    def __repr__(self) -> str:
        return (f"Mixing(mixup={self.mixup}, cutmix={self.cutmix}, "
                f"random_erasing={self.random_erasing})")
