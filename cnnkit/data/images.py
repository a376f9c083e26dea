"""Decode one image file into uint8 (H, W, C) pixels, the way every cnnkit image is read.

Folders of training images and the images a user later asks `predict` about both come
through `load_image`, so a model sees new images converted exactly as its training data was:
same grayscale formula (Pillow's ITU-R 601 luma), same alpha handling, same bilinear resize.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnkit.errors import CnnkitError

# What Pillow reads for us; used in messages and to describe folders.
IMAGE_FORMATS = "PNG, JPEG, BMP, GIF, TIFF, WebP"

# Pillow modes that carry no colour: such images default to one channel.
GRAY_MODES = {"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}

EXIF_ORIENTATION = 0x0112

# Decoding errors Pillow raises for files that are not images or are damaged.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def check_channels(channels: int | None) -> int | None:
    if channels is not None and channels not in (1, 3):
        raise CnnkitError(f"unknown channels {channels!r}; valid: 1 (grayscale), 3 (RGB)")
    return channels


def check_size(size) -> tuple[int, int] | None:
    """(H, W) from an int (square) or a pair; None means keep the image's own size."""
    if size is None:
        return None
    if isinstance(size, int):
        size = (size, size)
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise CnnkitError(f"invalid image size {size!r}; expected (height, width)") from None
    if h < 1 or w < 1:
        raise CnnkitError(f"invalid image size {size!r}; height and width must be >= 1")
    return h, w


def is_gray(img: Image.Image) -> bool:
    """True when the image has no colour: a gray mode, or a palette of gray entries only."""
    if img.mode in GRAY_MODES:
        return True
    if img.mode in ("P", "PA"):
        pal = img.getpalette() or []
        return all(pal[i] == pal[i + 1] == pal[i + 2] for i in range(0, len(pal) - 2, 3))
    return False


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode `path` (first frame of an animation); CnnkitError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CnnkitError(f"image file '{path}' does not exist")
    try:
        with Image.open(path) as img:  # closes the file even for animations (GIF, WebP)
            img.load()  # decode now: truncated files only fail here
        # Camera photos store "rotate me" in EXIF; apply it so pixels are upright as viewers
        # show them (Keras's load_img does not; a sideways photo is a silent misprediction).
        if img.getexif().get(EXIF_ORIENTATION, 1) != 1:
            img = ImageOps.exif_transpose(img)
    except UnidentifiedImageError:
        raise CnnkitError(f"cannot read '{path}': not an image ({IMAGE_FORMATS})") from None
    except DECODE_ERRORS as e:
        raise CnnkitError(f"cannot read image '{path}': {e}") from None
    return img


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """16-bit / int32 / float grayscale → 8-bit 'L' by scaling, not clipping like convert('L')."""
    a = np.asarray(img)
    if img.mode == "F":
        a = a * 255.0 if np.nanmax(a, initial=0) <= 1.0 else a
    elif a.dtype == np.uint16 or np.max(a, initial=0) > 255:
        a = a / 257.0  # 0..65535 → 0..255
    return Image.fromarray(np.clip(np.nan_to_num(a), 0, 255).round().astype(np.uint8), "L")


def to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Convert to 'L' (channels=1) or 'RGB' (channels=3).

    Transparent pixels are composited over white, as an image viewer shows them; dropping
    alpha instead would expose whatever colour the transparent pixels happen to hold."""
    if img.mode.startswith("I") or img.mode == "F":
        img = _high_depth_to_l(img)
    if img.mode in ("LA", "La", "PA", "RGBA", "RGBa") or (
        img.mode == "P" and "transparency" in img.info
    ):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    target = "L" if channels == 1 else "RGB"
    return img if img.mode == target else img.convert(target)


def load_image(path: str | os.PathLike, channels: int | None = None, size=None) -> np.ndarray:
    """Read an image file as uint8 (H, W, C).

    channels: 1 (grayscale) or 3 (RGB); None keeps gray images gray and makes the rest RGB.
    size: (H, W) to resize to (bilinear); None keeps the file's size.
    A file that is not a readable image raises CnnkitError naming it.
    """
    channels = check_channels(channels)
    size = check_size(size)
    img = open_image(path)
    if channels is None:
        channels = 1 if is_gray(img) else 3
    try:
        img = to_mode(img, channels)
        if size is not None and img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), Image.BILINEAR)
    except DECODE_ERRORS as e:
        raise CnnkitError(f"cannot read image '{path}': {e}") from None
    a = np.asarray(img, dtype=np.uint8)
    return a[:, :, None] if a.ndim == 2 else a  # (H, W, C)
