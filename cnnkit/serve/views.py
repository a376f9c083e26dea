"""The pictures the page shows, as PNG data URLs: the model's input, each convolution's feature
maps, and Grad-CAM over the input. Computed with `cnnkit.look.inside` on the PyTorch model
(the same maps `cnnkit inspect` draws), coloured with `cnnkit.look.html_parts`' colour maps."""
from __future__ import annotations

import base64
import functools
import math

import numpy as np

from cnnkit.look.html_parts import mosaic, png

MAX_TILES = 64          # channels shown per layer (a 512-channel layer would be a wall)
TILE_SIDE = 28          # tiles are enlarged by a whole factor to about this many pixels
CAM_SIDE = 112          # Grad-CAM overlays are drawn at about this size


def data_url(pixels: np.ndarray) -> str:
    """uint8 (H, W), (H, W, 1) or (H, W, 3) as a data:image/png;base64 URL."""
    return "data:image/png;base64," + base64.b64encode(png(pixels)).decode("ascii")


@functools.lru_cache(maxsize=4)
def _lut(name: str) -> np.ndarray:
    from cnnkit.look.html_parts import colormap

    return colormap(name)  # (256, 3) uint8


def feature_map_picture(fmap: np.ndarray) -> tuple[str, int]:
    """(data URL, channels shown): a layer's (H, W, C) output as one tile per channel, on one
    colour scale for the whole layer (so channels compare), viridis, dark = low."""
    h, w, c = fmap.shape
    shown = min(c, MAX_TILES)
    x = np.moveaxis(fmap[:, :, :shown], -1, 0)  # (n, H, W)
    lo, hi = float(x.min()), float(x.max())
    level = np.zeros(x.shape, np.uint8) if hi <= lo else \
        np.rint((x - lo) / (hi - lo) * 255).astype(np.uint8)
    k = max(1, round(TILE_SIDE / max(h, w)))
    tiles = _lut("viridis")[level].repeat(k, axis=1).repeat(k, axis=2)  # (n, kH, kW, 3)
    return data_url(mosaic(tiles, ncols=min(shown, max(4, math.ceil(math.sqrt(shown)))))), shown


def cam_picture(pixels: np.ndarray, heat: np.ndarray) -> str:
    """Grad-CAM heat (H, W) in [0, 1] over the image (H, W, C), jet at half opacity."""
    from PIL import Image

    h, w = heat.shape
    k = max(1, round(CAM_SIDE / max(h, w)))
    base = pixels if pixels.shape[2] == 3 else np.repeat(pixels[:, :, :1], 3, axis=2)
    base = base.repeat(k, axis=0).repeat(k, axis=1).astype(np.float32)  # crisp pixels
    smooth = np.asarray(Image.fromarray(heat.astype(np.float32), "F")
                        .resize((w * k, h * k), Image.BILINEAR))  # a smooth map over them
    colour = _lut("jet")[np.rint(np.clip(smooth, 0, 1) * 255).astype(np.uint8)]
    return data_url(np.rint(0.5 * base + 0.5 * colour).astype(np.uint8))
