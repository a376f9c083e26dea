"""What the training loop reads, checked: uint8 images (N, H, W, C) that the run's
preprocessing scales, float arrays used as given (the Keras path: raw 0-255 pixels train as
raw pixels), or a loader of ready batches (a Keras generator's).

A loader is anything with `set_epoch(e)`, `__len__` (batches per epoch) and `__iter__`
yielding (model input, targets); cnnkit.data.batches.BatchLoader is one, FloatBatches another.
"""
from __future__ import annotations

import torch

from cnnkit.data.augment import Augmenter
from cnnkit.data.batches import BatchLoader, batch_indices, epoch_generator
from cnnkit.data.mixing import Mixing
from cnnkit.data.rows import is_images, take
from cnnkit.errors import CnnkitError
from cnnkit.model.inputs import network_input
from cnnkit.train.losses import one_hot


def is_loader(x) -> bool:
    return all(hasattr(x, name) for name in ("set_epoch", "__iter__", "__len__"))


def as_inputs(x, what: str, floats: bool) -> torch.Tensor:
    """uint8 images; with `floats`, float arrays too (as float32, values as given)."""
    if not is_images(x):
        x = torch.as_tensor(x)
    if floats and x.is_floating_point():
        return x.float()
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise CnnkitError(f"{what} must be uint8 images (N, H, W, C); got {x.dtype} "
                          f"{tuple(x.shape)}")
    return take(x)  # a memory-mapped set stays on disk, gathered a batch at a time


def as_labels(y, n: int, what: str, targets: bool) -> torch.Tensor:
    """Integer class ids; with `targets` (a caller's own loss), float targets too (one-hot
    rows, 0/1 values), as that loss takes them."""
    y = torch.as_tensor(y)
    if targets and len(y) == n:
        return y.float() if y.is_floating_point() else y.long()
    if y.ndim != 1 or len(y) != n or y.is_floating_point():
        raise CnnkitError(f"{what} must be {n} integer class ids (N,); got {y.dtype} "
                          f"{tuple(y.shape)}")
    return y.long()


def check_data(model, x, y, what: str, own: bool):
    """(inputs, labels) for `model`, checked; a loader as it is (its batches come ready).
    `own`: the caller compiled its own loss (the Keras path): float arrays are used as
    given and the targets are what that loss takes."""
    if is_loader(x):
        return x, None
    x = as_inputs(x, what, floats=own)
    y = as_labels(y, len(x), f"labels of {what}", targets=own)
    if getattr(model, "foreign", False) and model.input_shape is None:
        # a user's own module (cnnkit.train.module) takes the shape of its first data
        model.input_shape = tuple(x.shape[1:])
    expected = tuple(model.input_shape)
    if tuple(x.shape[1:]) != expected:
        h, w, c = (tuple(x.shape[1:]) + ("?",) * 3)[:3]
        raise CnnkitError(f"{what} images are {h}x{w}x{c} but the model expects "
                          f"{'x'.join(map(str, expected))} (H x W x C)")
    if len(x) == 0:
        raise CnnkitError(f"{what} is empty")
    return x, y


def make_loader(trainer, x, y):
    """The training batches: a loader as given; uint8 images through BatchLoader (the run's
    normalization and augmentation); float arrays through FloatBatches."""
    cfg = trainer.config
    if is_loader(x):
        return x
    mixing = cfg.mixup or cfg.cutmix or cfg.random_erasing
    if x.dtype != torch.uint8:
        if cfg.augment or mixing:
            raise CnnkitError("augment, mixup, cutmix and random_erasing work on uint8 images; "
                              "float arrays are used as given (augment them in a generator, "
                              "e.g. ImageDataGenerator)")
        if cfg.sampler:
            raise CnnkitError("sampler works on uint8 images; for float arrays weigh the "
                              "classes instead (class_weight)")
        return FloatBatches(x, y, cfg.batch_size, trainer.shuffle, trainer.seed, trainer.device)
    p = trainer.preprocessing
    return BatchLoader(x.to(trainer.device), y.to(trainer.device), cfg.batch_size,
                       shuffle=trainer.shuffle, seed=trainer.seed,
                       augment=Augmenter(**cfg.augment) if cfg.augment else None,
                       normalize=p["normalize"], mean=p["mean"], std=p["std"],
                       device=trainer.device, sampler=cfg.sampler,
                       mix=label_mixing(trainer) if mixing else None)


def label_mixing(trainer) -> Mixing:
    """The config's mixup, CutMix and random erasing, mixing the loss's own one-hot rows with
    its label smoothing (timm's order: smooth, then mix)."""
    cfg = trainer.config
    if (cfg.mixup or cfg.cutmix) and trainer.objective is not None:
        raise CnnkitError("mixup and cutmix need cnnkit's own loss; a compiled loss takes the "
                          "labels as they are")
    k, ls = getattr(trainer, "num_classes", None), cfg.label_smoothing
    return Mixing(cfg.mixup, cfg.cutmix, cfg.random_erasing,
                  targets=lambda ids: one_hot(ids, k, ls))


def model_input(xb: torch.Tensor, preprocessing: dict) -> torch.Tensor:
    """A batch as the network takes it: uint8 images scaled by `preprocessing` (as predict
    scales them); float images as given, NHWC viewed as NCHW (channels_last in memory);
    vectors as they are."""
    if xb.dtype == torch.uint8:
        return network_input(preprocessing, xb)
    return xb.permute(0, 3, 1, 2) if xb.dim() == 4 else xb


class FloatBatches:
    """BatchLoader's twin for float arrays used as given: epoch e's order comes from
    (seed, e) alone, so a resumed run repeats the uninterrupted one; `shuffle=False` keeps
    the arrays' order (Keras's fit(shuffle=False))."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool,
                 seed: int, device):
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.seed, self.device, self.epoch = seed, device, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        order = epoch_generator(self.seed, epoch, 0)
        for idx in batch_indices(len(self.x), self.batch_size, self.shuffle, order):
            xb = self.x.index_select(0, idx).to(self.device, non_blocking=True)
            yield model_input(xb, {}), self.y.index_select(0, idx).to(self.device)
