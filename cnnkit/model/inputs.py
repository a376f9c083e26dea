"""The input contract: whatever a user hands a model becomes its input through this one path.

    pixels, single = to_pixels(x, model.input_shape)   # uint8 (N, H, W, C) at the model's shape
    net_input = network_input(model, pixels)            # float32 (N, C, H, W), as in training

Training (`fit`), evaluation (`evaluate`, `cnnkit evaluate`), prediction (`predict`,
`cnnkit predict`) and the web server all come through here, so an image is the same pixels
to a model however it arrives.

What `x` may be:
- a file path, or a list of them (decoded by cnnkit.data.images, EXIF orientation applied);
- a PIL image (treated as the file it came from);
- a numpy array, a torch tensor or nested lists of numbers, as uint8, other integers in
  0..255, bool (True is 255) or floats in [0, 1];
- one image or a batch: (H, W) is one gray image; (H, W, C) with C 1, 3 or 4 is one image;
  any other 3-D shape is a batch of gray images (N, H, W); (N, H, W, C) is a batch; a list of
  single images (paths, PIL images, arrays; sizes may differ) is a batch too.
Every image is then brought to the model's channels and size by `cnnkit.data.convert_images`
(RGBA over white, Pillow's luma for gray, bilinear resize), the conversion every dataset and
folder gets: a file predicted is, pixel for pixel, the same image read from a folder or an npz.
A run with `image_size`/`channels` (`--image-size 160 --channels 3`) builds its model for that
input shape, so the model records them, and its training images were made by that same
conversion: an image handed to predict, the server or an ONNX export is converted exactly so.

Floats become round(x * 255). That is exact for the seeds' `x / 255`, so predict(x / 255) ==
predict(x), and it loses nothing a model could use: models are trained on 8-bit pixels. A float
outside [0, 1] is an error rather than a guess: 0..255 floats are the classic silent mistake.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import torch

from cnnkit.errors import CnnkitError

SHAPES = "(H, W), (H, W, C), (N, H, W) or (N, H, W, C)"
KINDS = "uint8, integers in 0..255, bool, or floats in [0, 1]"


def to_pixels(x, input_shape) -> tuple[torch.Tensor, bool]:
    """(uint8 (N, H, W, C) at `input_shape` = (H, W, C), whether `x` was one image).

    A uint8 array (writable) or tensor already at the model's shape comes back as a view of
    it, a mapped split (cnnkit.data.rows.Rows) at that shape as it is: no copy."""
    if isinstance(x, np.ndarray):
        t = _from_numpy(x)
    elif isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    elif isinstance(x, (str, os.PathLike)):
        return _from_file(x, input_shape), True
    elif _is_pil(x):
        return _from_pil(x, input_shape), True
    elif isinstance(x, (list, tuple)) and x and _is_image(x[0]):
        return _from_list(x, input_shape), False
    elif _is_rows(x) and tuple(x.shape[1:]) == tuple(input_shape):
        return x, False  # a mapped split: its slices are gathered batch by batch, never whole
    else:  # nested lists of numbers, or anything numpy can read as an array
        try:
            t = _from_numpy(np.asarray(x))
        except ValueError as e:  # ragged nested lists
            raise CnnkitError(f"cannot read the input as an array of pixels: {e}") from None
    t, single = _as_batch(t, input_shape[2])
    return _fit(_as_uint8(t), input_shape), single


def network_input(model, pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, C) → the network's float32 input, scaled as the model was trained
    (`model.preprocessing`, saved with it: pixels / 255, or standardized with the training
    set's per-channel mean and std). `model` may be that dict itself: the training loop's."""
    from cnnkit.data.batches import to_model_input

    pre = model if isinstance(model, dict) else model.preprocessing
    if pre.get("normalize") == "standardize" and pre.get("mean") is None:
        raise CnnkitError("normalize='standardize' needs the training set's mean and std: "
                          "fit first, or set trainer.preprocessing['mean'/'std']")
    return to_model_input(pixels, pre.get("normalize", "unit"), pre.get("mean"), pre.get("std"))


# -- sources ------------------------------------------------------------------------------------
def _is_pil(x) -> bool:
    # Without importing Pillow (~40 ms): a PIL image exists only once PIL.Image is imported.
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(x, pil.Image)


def _is_rows(x) -> bool:
    rows = sys.modules.get("cnnkit.data.rows")  # Rows exist only once it is imported
    return rows is not None and isinstance(x, rows.Rows)


def _is_image(item) -> bool:
    """Does a list item stand for one image (else the list is read as nested numbers)?"""
    return isinstance(item, (str, os.PathLike, np.ndarray, torch.Tensor)) or _is_pil(item)


def _from_file(path, input_shape) -> torch.Tensor:
    from cnnkit.data.images import load_image

    h, w, c = input_shape
    return torch.from_numpy(load_image(path, channels=c, size=(h, w)))[None]


def _from_pil(img, input_shape) -> torch.Tensor:
    from cnnkit.data.images import DECODE_ERRORS, image_pixels, upright

    h, w, c = input_shape
    try:
        return torch.from_numpy(image_pixels(upright(img), channels=c, size=(h, w)))[None]
    except DECODE_ERRORS as e:
        raise CnnkitError(f"cannot read the PIL image ({img.mode} {img.size}): {e}") from None


def _from_list(items, input_shape) -> torch.Tensor:
    parts = []
    for i, item in enumerate(items):
        pixels, single = to_pixels(item, input_shape)
        if not single:
            raise CnnkitError(f"item {i} of the list is a batch of {len(pixels)} images; a list "
                              "holds single images (or pass one array (N, H, W, C))")
        parts.append(pixels)
    return torch.cat(parts)


def _from_numpy(a: np.ndarray) -> torch.Tensor:
    kind = a.dtype.kind
    if kind not in "buif":
        raise CnnkitError(f"pixels of dtype {a.dtype} cannot be images; valid: {KINDS}")
    if (kind == "u" and a.itemsize > 1) or (kind == "f" and a.itemsize > 8):
        a = a.astype(np.int64 if kind == "u" else np.float64)  # what torch has no kernels for
    elif not a.flags.writeable or not a.dtype.isnative or min(a.strides, default=0) < 0:
        a = np.array(a, dtype=a.dtype.newbyteorder("="))  # torch.from_numpy refuses these
    return torch.from_numpy(a)


# -- shape, dtype, size -------------------------------------------------------------------------
def _as_batch(t: torch.Tensor, model_channels: int) -> tuple[torch.Tensor, bool]:
    """(N, H, W, C) view and whether it was one image, by the rules in the module docstring."""
    shape = tuple(t.shape)
    if t.dim() == 2:
        t, single = t[None, :, :, None], True
    elif t.dim() == 3 and shape[-1] in (1, 3, 4):
        t, single = t[None], True
    elif t.dim() == 3:
        t, single = t[..., None], False
    elif t.dim() == 4:
        single = False
    else:
        raise CnnkitError(f"input of shape {shape} is not an image or a batch of images; "
                          f"valid: {SHAPES}")
    channels = t.shape[3]
    if channels not in (1, 3, 4) and channels != model_channels:
        raise CnnkitError(f"images with {channels} channels (input of shape {shape}); valid: "
                          "1 (gray), 3 (RGB) or 4 (RGBA)")
    if t.numel() == 0:
        raise CnnkitError(f"input of shape {shape} holds no pixels")
    return t, single


def _as_uint8(t: torch.Tensor) -> torch.Tensor:
    if t.dtype == torch.uint8:
        return t
    if t.dtype == torch.bool:
        return t.to(torch.uint8) * 255
    if t.is_complex():
        raise CnnkitError(f"pixels of dtype {t.dtype} cannot be images; valid: {KINDS}")
    if t.is_floating_point():
        if t.dtype not in (torch.float32, torch.float64):
            t = t.float()  # half precision: exact in float32, and x * 255 rounds right there
        lo, hi = (float(v) for v in torch.aminmax(t))  # NaN anywhere makes both NaN
        if not (lo >= 0 and hi <= 1):
            raise CnnkitError(_float_range(t) + "; pass uint8 pixels (0..255) or x / 255")
        return (t * 255).round_().to(torch.uint8)
    if not t.is_signed():
        t = t.long()  # uint16/32/64: few kernels in torch
    lo, hi = (int(v) for v in torch.aminmax(t))
    if lo < 0 or hi > 255:
        raise CnnkitError(f"integer pixels must be in 0..255 (found {lo}..{hi}); "
                          "pass uint8 pixels")
    return t.to(torch.uint8)


def _float_range(t: torch.Tensor) -> str:
    nan = torch.isnan(t)
    if not nan.any():
        lo, hi = (float(v) for v in torch.aminmax(t))
        return f"float pixels must be in [0, 1] (found {lo:g}..{hi:g})"
    rest = t[~nan]
    found = f", among values {float(rest.min()):g}..{float(rest.max()):g}" if rest.numel() else ""
    return f"float pixels must be in [0, 1] (found NaN{found})"


def _fit(t: torch.Tensor, input_shape) -> torch.Tensor:
    """The batch at the model's (H, W, C): the one conversion of channels and size."""
    h, w, c = input_shape
    if tuple(t.shape[1:]) == (h, w, c):
        return t
    if c not in (1, 3):  # convert_images knows gray and colour only
        raise CnnkitError(f"images of shape {tuple(t.shape[1:])} do not fit the model's input "
                          f"({h}, {w}, {c}); a {c}-channel model takes exactly that shape")
    from cnnkit.data import convert_images

    return convert_images(t, channels=c, size=(h, w))


def scales_own_pixels(model) -> bool:
    """Does the model take raw 0-255 pixels? Yes when its first layer past the input and the
    augmentation layers (which keep the scale) is Rescaling, as Keras's tutorials write
    `Rescaling(1./255)`, or PreprocessInput (keras.applications' preprocess_input, which takes
    0-255 pixels): then pixels reach it unscaled, or they would be divided twice. A model
    used as a layer (the tutorials' `data_augmentation` Sequential) is looked into."""
    from cnnkit.layers import InputLayer
    from cnnkit.layers.imagenet import PreprocessInput
    from cnnkit.layers.preprocessing import AUGMENTATION_LAYERS, Rescaling
    from cnnkit.model.graph import Nested

    keeps = (InputLayer, *AUGMENTATION_LAYERS)
    for layer in getattr(model, "layers", ()):
        if isinstance(layer, Nested):
            if all(isinstance(inner, keeps) for inner in layer.model.layers):
                continue  # an augmentation block: past it, as past its layers
            return scales_own_pixels(layer.model)
        if not isinstance(layer, keeps):
            return isinstance(layer, (Rescaling, PreprocessInput))
    return False
