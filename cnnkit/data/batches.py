"""The training hot path: index batches out of one uint8 tensor and make them model input.

The whole set stays as one uint8 (N, H, W, C) tensor; a batch is one `index_select`, one fused
uint8 -> float32 scale (the NHWC buffer viewed as NCHW is already channels_last, so no layout
copy), an optional batched augmentation, done. No per-sample Python, no DataLoader workers.
A memory-mapped dataset (cnnkit.data.mapped) or a split of one (cnnkit.data.rows.Rows) is
batched the same way, gathered from the page cache batch by batch and never loaded whole.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from cnnkit.data.rows import is_images, take
from cnnkit.errors import CnnkitError, one_of

NORMALIZE_MODES = ("unit", "standardize")


def standard_layout(x: torch.Tensor) -> torch.Tensor:
    """`x` with NCHW's own strides. `contiguous()` is not enough: a one-channel channels_last
    batch already counts as contiguous, yet convolutions read its strides as channels_last and
    hand channels_last outputs to code that then calls `.view`."""
    expected, step = [], 1
    for size in reversed(x.shape):
        expected.insert(0, step)
        step *= size
    return x if list(x.stride()) == expected else x.clone(memory_format=torch.contiguous_format)


def batch_indices(
    n: int,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    order: torch.Tensor | None = None,
) -> Iterator[torch.Tensor]:
    """Index tensors covering range(n) once, in order or in a `generator`-seeded permutation;
    or covering `order`, an epoch drawn otherwise (cnnkit.data.balance.balanced_order)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise CnnkitError(f"batch_size must be a positive integer; got {batch_size!r}")
    if order is None:
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


def _check_images(x: torch.Tensor) -> None:
    if not is_images(x) or x.dtype != torch.uint8 or x.ndim != 4:
        got = f"{x.dtype} {tuple(x.shape)}" if is_images(x) else type(x).__name__
        raise CnnkitError(f"images must be a uint8 tensor (N, H, W, C); got {got}")


def pixel_sums(x: torch.Tensor, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-channel sums of the pixels and of their squares (float64 (C,), exact) of uint8
    (N, H, W, C) images, and the pixels per channel.

    Summed over chunks, so 60,000 images never become one big float copy.
    """
    _check_images(x)
    x = take(x)  # a mapped set: chunks gathered (and released) one at a time
    total = torch.zeros(x.shape[-1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk].to(torch.float64)
        total += part.sum(dim=(0, 1, 2))
        squares += part.square().sum(dim=(0, 1, 2))
    return total, squares, x.numel() // x.shape[-1]


def channel_stats(x: torch.Tensor, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 (N, H, W, C) images, in [0, 1] units (float32 (C,))."""
    total, squares, count = pixel_sums(x, chunk)
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return (mean / 255).float(), (std / 255).clamp_min(1e-6).float()


def standardize(xp: torch.Tensor, mean, std, pixel_max: float) -> torch.Tensor:
    """(x / pixel_max - mean) / std per channel of (B, C, H, W) `xp`, folded into one
    multiply-add; `mean`/`std` hold 1 or C values in [0, 1] units."""
    if mean is None or std is None:
        raise CnnkitError("normalize='standardize' needs the per-channel mean and std")
    c = xp.shape[1]
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=xp.device).reshape(-1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=xp.device).reshape(-1)
    if mean_t.numel() not in (1, c) or std_t.numel() not in (1, c):
        raise CnnkitError(f"mean/std need 1 or {c} values (one per channel); got {mean_t.numel()} and {std_t.numel()}")
    scale = (1.0 / (pixel_max * std_t)).reshape(1, -1, 1, 1)
    shift = (-mean_t / std_t).reshape(1, -1, 1, 1)
    return torch.addcmul(shift, xp, scale)


def to_model_input(
    x: torch.Tensor,
    normalize: str = "unit",
    mean: torch.Tensor | None = None,
    std: torch.Tensor | None = None,
) -> torch.Tensor:
    """uint8 (B, H, W, C) -> float32 (B, C, H, W), channels_last, in [0, 1] or standardized.

    `mean`/`std` are per channel in [0, 1] units (as `channel_stats` returns them), e.g.
    Fashion-MNIST's 0.286 / 0.353.
    """
    _check_images(x)
    xp = x.permute(0, 3, 1, 2)  # (B, C, H, W) view of the NHWC buffer: channels_last strides
    if normalize == "unit":
        out = xp.mul(1.0 / 255)  # one kernel: uint8 -> float32 and scale, layout preserved
    elif normalize == "standardize":
        out = standardize(xp, mean, std, pixel_max=255.0)
    else:
        raise one_of("normalize", normalize, NORMALIZE_MODES)
    if not out.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A generator fixed by (seed, epoch, stream): epochs differ, reruns repeat, streams are independent."""
    state = np.random.SeedSequence([seed, epoch, stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


class BatchLoader:
    """Iterate (x_float (B, C, H, W), y (B,)) batches over uint8 images held in memory.

    The order of epoch e comes from (seed, e) alone. Each `iter()` runs the current epoch and then
    advances it, so consecutive epochs differ without any bookkeeping; `set_epoch(e)` pins
    the next one (to resume a run, or to replay an epoch exactly). Augmentation (a callable
    `augment(x, generator=...)` such as `Augmenter`) sees batches in [0, 1]; standardization, if
    asked for, comes after it, as Keras applies `rescale` after its random transforms.
    `mix` (a callable `mix(x, y, generator=...) -> (x, targets)` such as
    cnnkit.data.mixing.Mixing) runs after the augmentation, on the same stream: with mixup or
    CutMix the batches' targets are rows of class probabilities (B, K) instead of ids.
    `sampler='balanced'`: each epoch is N draws with every class equally likely
    (cnnkit.data.balance.balanced_order) instead of a permutation.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int | None = 0,
        augment: Callable[..., torch.Tensor] | None = None,
        normalize: str = "unit",
        mean: torch.Tensor | None = None,
        std: torch.Tensor | None = None,
        drop_last: bool = False,
        device: str | torch.device | None = None,
        mix: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None,
        sampler: str | None = None,
    ):
        _check_images(x)
        y = torch.as_tensor(y)
        if y.ndim != 1 or len(y) != len(x):
            raise CnnkitError(f"{len(x)} images but labels of shape {tuple(y.shape)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise CnnkitError(f"batch_size must be a positive integer; got {batch_size!r}")
        if normalize not in NORMALIZE_MODES:
            raise one_of("normalize", normalize, NORMALIZE_MODES)
        if normalize == "standardize" and (mean is None or std is None):
            mean, std = channel_stats(x)  # from the training images themselves
        self.x, self.y = take(x), y  # a mapped set stays on disk, gathered batch by batch
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed = int(torch.randint(0, 2**31, ()).item()) if seed is None else int(seed)
        self.augment, self.normalize, self.mix = augment, normalize, mix
        self.device = torch.device(device) if device is not None else x.device
        if normalize == "standardize":
            self.mean = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1).to(self.device)
            self.std = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1).to(self.device)
        else:
            self.mean = self.std = None
        from cnnkit.data.balance import check_sampler

        self.sampler = check_sampler(sampler)
        self.epoch = 0

    def epoch_order(self, generator: torch.Generator) -> torch.Tensor | None:
        """The epoch's indices drawn by the sampler; None: a permutation (batch_indices')."""
        if self.sampler is None:
            return None
        from cnnkit.data.balance import balanced_order

        return balanced_order(self.y, generator)

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        """`t` on the loader's device. A host batch bound for a GPU goes through pinned
        memory, the only way `non_blocking` copies overlap compute (from pageable memory they
        are synchronous); torch's caching host allocator keeps the pinned buffers reusable."""
        if t.device == self.device:
            return t
        if self.device.type == "cuda" and t.device.type == "cpu":
            t = t.pin_memory()
        return t.to(self.device, non_blocking=True)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        order = epoch_generator(self.seed, epoch, 0)
        augment_rng = epoch_generator(self.seed, epoch, 1)
        for idx in batch_indices(len(self.x), self.batch_size, self.shuffle, order, self.drop_last,
                                 self.epoch_order(order)):
            # the index where each tensor lives: index_select wants both on one device
            xb = self._to_device(self.x.index_select(0, idx.to(self.x.device)))  # uint8: 4x less to move
            yb = self._to_device(self.y.index_select(0, idx.to(self.y.device)))
            yield self._batch(xb, yb, augment_rng)

    def _model_input(self, xb: torch.Tensor, augment_rng, augment: bool = True) -> torch.Tensor:
        """A uint8 batch as the network takes it (`_batch`'s images, unmixed)."""
        return self._batch(xb, None, augment_rng, augment)[0]

    def _batch(self, xb: torch.Tensor, yb, augment_rng, augment: bool = True):
        """(input, targets): a uint8 batch scaled, augmented and mixed (`augment`), then
        standardized; without either in one fused multiply-add (`standardize`)."""
        mix = self.mix if yb is not None else None
        if (self.augment is None and mix is None) or not augment:
            return to_model_input(xb, self.normalize, self.mean, self.std), yb
        xf = to_model_input(xb, "unit")
        if self.augment is not None:
            xf = self.augment(xf, generator=augment_rng)
        if mix is not None:
            xf, yb = mix(xf, yb, generator=augment_rng)
        return (xf.sub_(self.mean).div_(self.std) if self.normalize == "standardize" else xf), yb
