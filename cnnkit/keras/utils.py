"""Keras's utilities the seeds and keras.io's examples use: `to_categorical`, `plot_model`,
`set_random_seed`, `load_img`, `img_to_array`, `image_dataset_from_directory`."""
from __future__ import annotations

import numpy as np

from cnnkit.errors import CnnkitError, one_of
from cnnkit.keras.image_dataset import image_dataset_from_directory  # noqa: F401


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


# Pillow's filters by Keras's names for them (keras.utils.load_img's `interpolation`)
INTERPOLATIONS = {"nearest": 0, "bilinear": 2, "bicubic": 3, "hamming": 5, "box": 4,
                  "lanczos": 1}
COLOR_MODES = {"rgb": "RGB", "grayscale": "L", "rgba": "RGBA"}


def load_img(path, color_mode="rgb", target_size=None, interpolation="nearest",
             keep_aspect_ratio=False):
    """A Pillow image, as keras.utils.load_img gives it: `color_mode` 'rgb', 'grayscale' or
    'rgba', resized to `target_size` (height, width) with Keras's `interpolation` (and its
    centre crop with `keep_aspect_ratio`). Read by cnnkit (cnnkit.data.images), which turns a
    photo upright as its EXIF orientation says, where Keras does not."""
    from cnnkit.data.images import open_image

    if color_mode not in COLOR_MODES:
        raise one_of("load_img color_mode", color_mode, list(COLOR_MODES))
    if interpolation not in INTERPOLATIONS:
        raise one_of("load_img interpolation", interpolation, list(INTERPOLATIONS))
    img = open_image(path).convert(COLOR_MODES[color_mode])
    if target_size is None or img.size == (target_size[1], target_size[0]):
        return img
    width, height = img.size
    target_h, target_w = target_size
    box = None
    if keep_aspect_ratio:  # the largest centred box of the target's aspect ratio
        crop_h = min(height, width * target_h // target_w)
        crop_w = min(width, height * target_w // target_h)
        left, top = (width - crop_w) // 2, (height - crop_h) // 2
        box = (left, top, left + crop_w, top + crop_h)
    return img.resize((target_w, target_h), INTERPOLATIONS[interpolation], box=box)


def img_to_array(img, data_format=None, dtype=None):
    """(H, W, C) float32 pixels 0-255 of a Pillow image (or an array), as Keras gives them."""
    if data_format not in (None, "channels_last"):
        raise CnnkitError(f"img_to_array: data_format={data_format!r} is not supported; valid: "
                          "'channels_last'")
    x = np.asarray(img, dtype=dtype or "float32")
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise CnnkitError(f"img_to_array takes an image of shape (H, W) or (H, W, C); received "
                          f"shape {x.shape}")
    return x
