"""Predictions from a model on images as users hold them: whatever `cnnkit.model.inputs` takes
(files, PIL images, arrays, tensors; one image or a batch), as class probabilities by the
output contract of `cnnkit.model.outputs`."""
from __future__ import annotations

import numpy as np
import torch

from cnnkit.errors import CnnkitError
from cnnkit.model.inputs import network_input, to_pixels
from cnnkit.model.outputs import probabilities


def eval_mode(net) -> None:
    """`net.eval()` only where needed: setting every module's flag is a large part of a single
    image's prediction time, and so is walking `net.modules()`, so the walk is done once (a
    built network's modules do not change) and the flags are read from a tuple
    (bench/README.md has the figures)."""
    modules = net.__dict__.get("_cnnkit_modules")
    if modules is None:
        modules = net.__dict__["_cnnkit_modules"] = tuple(net.modules())
    for m in modules:
        if m.training:
            net.eval()
            return


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
    act = net.output_activation
    with torch.inference_mode():  # the caller's threads: switching costs more than it saves
        if len(pixels) <= batch_size:  # one batch (one image): no slicing, no concatenation
            probs = probabilities(net(network_input(model, pixels)), act)
        else:
            probs = torch.cat([probabilities(net(network_input(model, pixels[i:i + batch_size])),
                                             act) for i in range(0, len(pixels), batch_size)])
    probs = check_finite(probs.numpy())
    return probs[0] if single else probs


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
