"""Predictions from a model on images as users hold them: whatever `cnnkit.model.inputs` takes
(files, PIL images, arrays, tensors; one image or a batch), as class probabilities by the
output contract of `cnnkit.model.outputs`."""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from cnnkit.errors import CnnkitError
from cnnkit.model.inputs import network_input, to_pixels
from cnnkit.model.outputs import probabilities


def eval_mode(net) -> list:
    """`net.eval()` only where needed; returns the modules that were training. Setting every
    module's flag is a large part of a single image's prediction time, and so is walking
    `net.modules()`, so the walk is done once (a built network's modules do not change) and
    the flags are read from a tuple (bench/README.md has the figures). `predict` leaves the
    network in eval mode, so the next prediction finds nothing to set."""
    modules = net.__dict__.get("_cnnkit_modules")
    if modules is None:
        modules = net.__dict__["_cnnkit_modules"] = tuple(net.modules())
    training = [m for m in modules if m.training]
    if training:
        net.eval()
    return training


@contextlib.contextmanager
def evaluating(net):
    """Eval mode (dropout off, batch norm's moving statistics) for the block; each module's
    own flag back afterwards, so evaluating or looking inside in the middle of training
    changes nothing."""
    training = eval_mode(net)
    try:
        yield
    finally:
        for m in training:
            m.training = True


def batch_size_for(x, size: int) -> int:
    """`size`, or fewer images where that would pass 32 MB of float input per batch (a 512x512
    RGB batch of 256 would be 800 MB), so prediction and evaluation fit where training did."""
    return max(1, min(size, (32 << 20) // (4 * max(1, x[0].numel() if len(x) else 1))))


def predict_proba(model, x, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, K), or (K,) for one image; K is the number of classes, so a
    model ending in Dense(1, activation='sigmoid') gives two columns, [1 - p, p], p = P(class 1).
    Images become the network's input exactly as in training (`model.preprocessing`).

    Batches of 256: their activations stay under glibc's largest mmap threshold, so in a run
    that keeps freed memory (cnnkit.train.memory) a batch reuses the last one's pages, and
    elsewhere they stay small (bench/README.md has the figures). Nothing process-wide is
    changed here: torch's thread count and malloc's settings stay the caller's."""
    net = model.net
    if len(net.output_shape) != 1:  # shape inference once, at build
        model.check_classifier()
    pixels, single = to_pixels(x, model._require_input())  # uint8 (N, H, W, C)
    eval_mode(net)
    device = next(net.parameters(), pixels).device  # where training (or evaluate) left it
    batch_size = batch_size_for(pixels, batch_size)
    with torch.inference_mode():  # the caller's threads: switching costs more than it saves
        probs = in_batches(lambda part: pixel_probabilities(model, part[:].to(device)).cpu(),
                           pixels, batch_size, torch.cat)  # part[:]: a mapped split's rows
    probs = check_finite(probs.numpy())
    return probs[0] if single else probs


def pixel_probabilities(model, pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, C) -> probabilities (N, K): the model's preprocessing, forward pass,
    calibration temperature (logits / T, `cnnkit calibrate`) and output contract; what
    `predict_proba` runs per batch and the ONNX export traces."""
    logits = model.net(network_input(model, pixels))
    temperature = getattr(model, "temperature", 1.0)  # a user's own module has none
    if temperature != 1.0:
        logits = logits / temperature
    return probabilities(logits, model.net.output_activation)


def predict_logits(model, x, batch_size: int = 256) -> torch.Tensor:
    """The network's logits (N, units) for images `x` (uint8 (N, H, W, C) at the model's
    input shape), the temperature not applied: what a calibration fits its temperature to."""
    eval_mode(model.net)
    device = next(model.net.parameters(), x).device
    with torch.inference_mode():
        return in_batches(lambda part: model.net(network_input(model, part[:].to(device))).cpu(),
                          x, batch_size_for(x, batch_size), torch.cat).float()


def in_batches(fn, x, size: int, cat):
    """`fn` over `x` in slices of `size`, joined by `cat`; one batch (one image) as it is."""
    if len(x) <= size:
        return fn(x)
    return cat([fn(x[i:i + size]) for i in range(0, len(x), size)])


def check_finite(probs: np.ndarray) -> np.ndarray:
    """`probs` (N, K) if every one is finite, else a CnnkitError naming the first bad image:
    NaN is never handed on as a prediction, by either runtime (torch, onnxruntime)."""
    finite = np.isfinite(probs).all(axis=1)  # (N,); a few µs, against silently returning NaN
    if not finite.all():
        first = int(np.argmin(finite))
        raise CnnkitError(f"the model's probabilities for image {first} of {len(probs)} are NaN "
                          "or infinite: its weights or activations overflow float32 (were its "
                          "weights trained with too high a learning rate?)")
    return probs
