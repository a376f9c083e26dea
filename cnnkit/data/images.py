"""Decode one image file into uint8 (H, W, C) pixels, the way every cnnkit image is read.

Folders of training images and the images a user later asks `predict` about both come
through `load_image`. Pillow only decodes here, to gray, RGB or RGBA at the file's own size;
alpha, grayscale and resizing are then `cnnkit.data.convert_images`, the one conversion that
datasets and arrays go through too, so a model sees a new image exactly as its training data.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnkit.data import check_channels, check_size  # noqa: F401  (their home: stdlib only)
from cnnkit.errors import CnnkitError
from cnnkit.fsutil import readable_file

# The Pillow formats cnnkit reads, and no others: left to guess, Pillow tries every format it
# knows, EPS among them, whose decoder hands the file to Ghostscript (`gs`), a program that runs
# PostScript, so a file named photo.png could start it. `pillow_open` is the one way in.
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
IMAGE_FORMATS = "PNG, JPEG, BMP, GIF, TIFF, WebP"  # the same, for messages and folders

# Pillow modes that carry no colour: such images default to one channel.
GRAY_MODES = {"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}

EXIF_ORIENTATION = 0x0112

# Decoding errors Pillow raises for files that are not images or are damaged.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def is_gray(img: Image.Image) -> bool:
    """True when the image has no colour: a gray mode, or a palette of gray entries only."""
    if img.mode in GRAY_MODES:
        return True
    if img.mode in ("P", "PA"):
        pal = img.getpalette() or []
        return all(pal[i] == pal[i + 1] == pal[i + 2] for i in range(0, len(pal) - 2, 3))
    return False


def pillow_open(fp) -> Image.Image:
    """Pillow's Image.open limited to FORMATS (a path or a binary file object): every encoded
    image cnnkit reads (files, folders, uploads, its own PNGs) is opened here. Another format
    raises UnidentifiedImageError, before any decoder (or program) sees the bytes."""
    return Image.open(fp, formats=FORMATS)


def open_image(path: str | os.PathLike, max_pixels: int | None = None) -> Image.Image:
    """Open and fully decode `path` (first frame of an animation); CnnkitError if unreadable.

    An image of more than `max_pixels` (Pillow's MAX_IMAGE_PIXELS, ~89 million, by default) is
    refused from its header, before a byte is decoded: a small file can declare a huge image
    (a decompression bomb), and Pillow itself only warns below twice its limit."""
    path = readable_file(path, "image file")  # missing, a folder, a FIFO, unreadable
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        with warnings.catch_warnings():  # Pillow warns of what is refused below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = pillow_open(path)
        with opened as img:  # closes the file even for animations (GIF, WebP)
            w, h = img.size
            if limit and w * h > limit:
                raise CnnkitError(f"image '{path}' is {w}×{h} = {w * h:,} pixels; valid: at most "
                                  f"{limit:,} pixels")
            img.load()  # decode now: truncated files only fail here
        img = upright(img)
    except CnnkitError:  # the size refused above (a ValueError too)
        raise
    except Image.DecompressionBombError:  # Pillow's own refusal, past twice its limit
        raise CnnkitError(f"image '{path}' has more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels; "
                          f"valid: at most {limit:,} pixels") from None
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


def upright(img: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says. Camera photos store "rotate me" there;
    viewers apply it, so we do (Keras's load_img does not: a sideways photo mispredicts)."""
    if img.getexif().get(EXIF_ORIENTATION, 1) != 1:
        img = ImageOps.exif_transpose(img)
    return img


def decode(img: Image.Image) -> np.ndarray:
    """uint8 (H, W, C) at the image's own size: C = 1 for gray, 3 for colour, 4 where the
    image has transparency (converted later, over white; dropping alpha would expose
    whatever colour the transparent pixels happen to hold)."""
    if img.mode.startswith("I") or img.mode == "F":
        img = _high_depth_to_l(img)
    if img.mode in ALPHA_MODES or (img.mode == "P" and "transparency" in img.info):
        target = "RGBA"
    else:
        target = "L" if is_gray(img) else "RGB"
    a = np.array(img if img.mode == target else img.convert(target), dtype=np.uint8)  # writable
    return a[:, :, None] if a.ndim == 2 else a


def image_pixels(img: Image.Image, channels: int | None = None, size=None) -> np.ndarray:
    """uint8 (H, W, C) of an open image, converted to `channels` and `size` by
    `cnnkit.data.convert_images`; channels None keeps gray images gray and makes the rest RGB.
    Pillow's decoding errors pass through (callers name the file)."""
    channels, size = check_channels(channels), check_size(size)
    if channels is None:
        channels = 1 if is_gray(img) else 3
    a = decode(img)
    if a.shape[2] == channels and (size is None or a.shape[:2] == size):
        return a  # nothing to convert: no torch
    import torch

    from cnnkit.data import convert_images

    return convert_images(torch.from_numpy(a)[None], channels, size)[0].numpy()


def load_image(path: str | os.PathLike, channels: int | None = None, size=None) -> np.ndarray:
    """Read an image file as uint8 (H, W, C).

    channels: 1 (grayscale) or 3 (RGB); None keeps gray images gray and makes the rest RGB.
    size: (H, W) to resize to (bilinear, as `cnnkit.data.convert_images`); None keeps the
    file's size. A file that is not a readable image raises CnnkitError naming it.
    """
    channels, size = check_channels(channels), check_size(size)
    img = open_image(path)
    try:
        return image_pixels(img, channels, size)
    except DECODE_ERRORS as e:
        raise CnnkitError(f"cannot read image '{path}': {e}") from None
