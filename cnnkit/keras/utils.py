"""Keras's utilities the seeds use: `to_categorical`, `plot_model`, `set_random_seed`."""
from __future__ import annotations

import numpy as np

from cnnkit.errors import CnnkitError


def to_categorical(x, num_classes=None):
    """One-hot rows (float64, as Keras 3 returns them) for integer class ids."""
    y = np.asarray(x)
    if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
        raise CnnkitError(f"to_categorical takes integer class ids; received dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y[..., 0]  # Keras drops a trailing axis of 1: CIFAR-10's (N, 1) labels
    if y.size and y.min() < 0:
        raise CnnkitError(f"to_categorical: class id {int(y.min())} is negative")
    k = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if y.size and y.max() >= k:
        raise CnnkitError(f"to_categorical: class id {int(y.max())} is out of range for "
                          f"num_classes={k}")
    out = np.zeros(y.shape + (k,), dtype=np.float64)
    np.put_along_axis(out, y[..., None], 1.0, axis=-1)
    return out


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False,
               show_layer_names=False, rankdir="TB", expand_nested=False, dpi=200,
               show_layer_activations=False, show_trainable=False, **kwargs):
    """Draw the model's layers to `to_file` (.png or .svg), drawn by cnnkit (no graphviz):
    each box shows the layer's name, type, arguments, shapes and parameters (cnnkit always
    shows the shapes). Returns the file written as a Picture (a Path): the value of a
    notebook cell, it shows the diagram inline, as Keras's IPython image does."""
    if rankdir != "TB":
        raise CnnkitError(f"plot_model: rankdir={rankdir!r} is not supported; valid: 'TB'")
    if kwargs:
        key = next(iter(kwargs))
        raise CnnkitError(f"plot_model() got an unknown argument {key}=...; valid: to_file, "
                          "show_shapes, show_dtype, show_layer_names, rankdir, expand_nested, "
                          "dpi, show_layer_activations, show_trainable")
    base = getattr(model, "base", model)  # an activation model draws its model
    return base.plot(to_file)


def set_random_seed(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators, as keras.utils.set_random_seed."""
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
