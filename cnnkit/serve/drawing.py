"""A drawing made into a model's input the way MNIST's digits were made.

LeCun, Cortes and Burges describe MNIST's preparation: each digit, white ink on black, was
"size normalized to fit in a 20x20 pixel box while preserving their aspect ratio" (grey levels
from the anti-aliasing of that scaling), then "centered in a 28x28 image by computing the
center of mass of the pixels, and translating the image so as to position this point at the
center of the 28x28 field". A digit drawn big in the corner of a 280-pixel canvas and shrunk
whole to 28×28 is none of that (a thin, off-centre stroke: why sketchpad demos misread drawn
digits), so a drawing comes through here first:

    pixels = prepare_drawing(gray)           # uint8 (28, 28): ink bounding box → 20×20 → centred
    pixels = prepare_drawing(gray, (8, 8))   # another model size: the same proportions (20/28)

The ink is found whatever the background: a light one (black ink on paper, a scanned form) is
inverted first, as MNIST's digits are light on dark. The same preparation builds training sets
from other digits (tests/serve/conftest.py makes one from scikit-learn's 8×8 digits), so drawn,
trained and tested digits are the same kind of picture.
"""
from __future__ import annotations

import numpy as np

# MNIST's proportions: a 20-pixel box in a 28-pixel field.
BOX, FIELD = 20, 28
# Grey levels at or below this are background for the bounding box: antialiasing fringes and
# JPEG noise around a stroke must not widen it.
INK_THRESHOLD = 24


def ink_on_black(gray: np.ndarray) -> np.ndarray:
    """uint8 (H, W) with the ink light on a dark background: inverted where the border, the
    background, is mostly light."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return 255 - gray if np.median(border) > 127 else gray


def prepare_drawing(gray: np.ndarray, size=(FIELD, FIELD)) -> np.ndarray:
    """uint8 (H, W) at `size` from a uint8 (h, w) drawing of any size: MNIST's preparation
    (module docstring). A drawing with no ink gives an all-black image."""
    from PIL import Image

    out_h, out_w = size
    ink = ink_on_black(np.asarray(gray, dtype=np.uint8))
    rows = np.flatnonzero((ink > INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink > INK_THRESHOLD).any(axis=0))
    out = np.zeros((out_h, out_w), np.uint8)
    if not len(rows):
        return out
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]  # (ch, cw): the ink's bounding box
    ch, cw = crop.shape
    box_h, box_w = max(1, round(out_h * BOX / FIELD)), max(1, round(out_w * BOX / FIELD))
    scale = min(box_h / ch, box_w / cw)  # the longer side fills the box; aspect kept
    new_h, new_w = max(1, round(ch * scale)), max(1, round(cw * scale))
    # Pillow's bilinear resize antialiases when shrinking (its filter widens with the scale)
    digit = np.asarray(Image.fromarray(crop).resize((new_w, new_h), Image.BILINEAR))
    top, left = _centred_by_mass(digit, out_h, out_w)
    out[top:top + new_h, left:left + new_w] = digit
    return out


def _centred_by_mass(digit: np.ndarray, out_h: int, out_w: int) -> tuple[int, int]:
    """(top, left) that put the digit's centre of mass at the field's centre ((13.5, 13.5) in
    pixel indices for 28×28), kept inside the field: LeCun's translation
    could push a lopsided digit past the edge, and a cut digit is a different digit."""
    h, w = digit.shape
    mass = digit.astype(np.float64)
    total = mass.sum()
    if total == 0:  # ink only at the threshold's edge, lost in resizing
        cy, cx = (h - 1) / 2, (w - 1) / 2
    else:
        cy = float((mass.sum(axis=1) * np.arange(h)).sum() / total)
        cx = float((mass.sum(axis=0) * np.arange(w)).sum() / total)
    top = int(np.clip(np.rint(out_h / 2 - cy - 0.5), 0, out_h - h))  # +0.5: pixel centres
    left = int(np.clip(np.rint(out_w / 2 - cx - 0.5), 0, out_w - w))
    return top, left
