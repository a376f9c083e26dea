"""What the network learned, as PNG files: a conv layer's filters, a layer's feature maps,
and heat maps (Grad-CAM, saliency) over the image they explain. Tiles are numbered grids
drawn by `_tile_figure` / `_draw_tiles`."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnkit.errors import CnnkitError
from cnnkit.look.figures import _as_images, _grid_shape, _show_image, new_figure, save_figure


# --- what the network learned ---------------------------------------------------------------

FILTER_LAYOUTS = ("keras", "torch")  # (kh, kw, in, out) as get_weights(); (out, in, kh, kw)


def plot_filters(kernel, path, layout: str = "keras", title: str | None = None) -> Path:
    """A conv layer's kernels as a grid, one numbered tile per filter (filter i makes output
    channel i), each drawn as it meets the image: the tile's top row weighs the top row of
    every window, its left column the left column.

    `kernel` is in Keras layout (kh, kw, in, out), as `model.get_weights()` and
    `cnnkit.look.inside.first_layer_filters` give it; `layout="torch"` takes PyTorch's
    (out, in, kh, kw), as `conv.weight` holds it. RGB input: each kernel drawn in colour,
    scaled to its own range. One input channel: all kernels on one blue-white-red scale
    centred on 0, so weights compare across filters. Other layers (in > 3): the mean over
    input channels, said in the title."""
    if layout not in FILTER_LAYOUTS:
        raise CnnkitError(f"unknown layout {layout!r}; valid: 'keras' (kh, kw, in, out) or "
                          "'torch' (out, in, kh, kw)")
    w = np.asarray(kernel, dtype=float)
    if w.ndim != 4:
        shape = "(kh, kw, in, out)" if layout == "keras" else "(out, in, kh, kw)"
        raise CnnkitError(f"conv kernel must have shape {shape} for layout={layout!r}; "
                          f"got {w.shape}")
    if layout == "keras":
        w = w.transpose(3, 2, 0, 1)  # (out, in, kh, kw)
    out, cin, kh, kw = w.shape
    fig, ax, grid = _tile_figure(out, kh, kw, width_in=7, tile_max=0.9, tile_min=0.45,
                                 colorbar=cin != 3)
    heading = f"{title}: " if title else ""
    if cin == 3:
        tiles = w.transpose(0, 2, 3, 1)  # (out, kh, kw, 3)
        lo = tiles.min(axis=(1, 2, 3), keepdims=True)
        span = tiles.max(axis=(1, 2, 3), keepdims=True) - lo
        tiles = np.divide(tiles - lo, span, out=np.full_like(tiles, 0.5), where=span > 0)
        _draw_tiles(ax, tiles, grid)
        ax.set_title(f"{heading}{out} filters, {kh}×{kw}, RGB\n(each scaled to its own range)",
                     fontsize=10)
    else:
        tiles = w[:, 0] if cin == 1 else w.mean(axis=1)
        top = max(float(np.nanmax(np.abs(tiles), initial=0)), 1e-12)
        im = _draw_tiles(ax, tiles, grid, cmap="bwr", vmin=-top, vmax=top)
        fig.colorbar(im, ax=ax, shrink=0.8, label="weight")
        mean = f", mean over {cin} input channels" if cin != 1 else ""
        ax.set_title(f"{heading}{out} filters, {kh}×{kw}{mean}\n(one colour scale, "
                     f"±{top:.3g})", fontsize=10)
    return save_figure(fig, path)


FEATURE_MAP_LAYOUTS = ("keras", "torch")  # (H, W, C) as feature_maps gives; (C, H, W)


def plot_feature_maps(maps, path, title: str | None = None, layout: str = "keras") -> Path:
    """One layer's output for one image as a grid, one tile per channel numbered from 0, all
    on ONE colour scale (stated in the title, drawn as the colour bar): a strong channel looks
    strong beside a weak one, and a dead channel (0 everywhere) looks dead.

    `maps` is (H, W, C) in Keras layout, as `cnnkit.look.inside.feature_maps` gives it, or
    (C, H, W) with `layout="torch"`; a vector (D,) is drawn as D one-pixel tiles. A leading
    batch axis of one image is dropped. Values of both signs get a blue-white-red scale
    centred on 0; all of one sign, viridis from 0."""
    if layout not in FEATURE_MAP_LAYOUTS:
        raise CnnkitError(f"unknown layout {layout!r}; valid: 'keras' (H, W, C) or "
                          "'torch' (C, H, W)")
    maps = np.asarray(maps, dtype=float)
    if maps.ndim in (2, 4) and maps.shape[0] == 1:
        maps = maps[0]  # one image with its batch axis
    if maps.ndim == 1:
        maps = maps[:, None, None]  # (D, 1, 1): a unit per tile
    elif maps.ndim == 3 and layout == "keras":
        maps = maps.transpose(2, 0, 1)  # (C, H, W)
    elif maps.ndim != 3:
        shape = "(H, W, C)" if layout == "keras" else "(C, H, W)"
        raise CnnkitError(f"feature maps must have shape {shape} or (D,) for layout={layout!r}; "
                          f"got {maps.shape}")
    c, h, w = maps.shape
    finite = maps[np.isfinite(maps)]  # a diverged model's NaNs are drawn blank, not fatal
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if lo < 0 < hi:
        top = max(-lo, hi)
        cmap, vmin, vmax, scale = "bwr", -top, top, f"±{top:.3g}"
    else:
        vmin, vmax = min(lo, 0.0), max(hi, 0.0)
        vmax = vmax if vmax > vmin else vmin + 1.0  # all zero: any scale shows it flat
        cmap, scale = "viridis", f"{vmin:.3g} to {vmax:.3g}"
    fig, ax, grid = _tile_figure(c, h, w, width_in=10, tile_max=0.6 if h == w == 1 else 1.5,
                                 tile_min=0.55, colorbar=True)
    im = _draw_tiles(ax, maps, grid, cmap=cmap, vmin=vmin, vmax=vmax)
    fig.colorbar(im, ax=ax, shrink=0.8, label="output value")
    what = f"{c} units" if h == w == 1 else f"{c} channels, {h}×{w}"
    dead = int((maps.reshape(c, -1) == 0).all(axis=1).sum()) if h * w > 1 else 0
    dead_note = f", {dead} of {c} are 0 everywhere" if dead else ""
    ax.set_title(f"{title or 'feature maps'}: {what}{dead_note}\n(one colour scale for every "
                 f"tile: {scale})", fontsize=10)
    return save_figure(fig, path)


# --- what the network looks at --------------------------------------------------------------

def plot_heatmap(image, heatmap, path, title: str, label: str = "heat map",
                 smooth: bool = True) -> Path:
    """An image, a heat map in [0, 1] at the image's size (Grad-CAM, saliency), and the two
    overlaid, side by side; the map's maximum is marked with a + on the overlay. `smooth`
    draws the map bilinearly, for maps that are smooth by construction (Grad-CAM, upsampled);
    a per-pixel map (saliency) is drawn as its pixels."""
    images = _as_images(np.asarray(image)[None])
    img = images[0]
    heat = np.asarray(heatmap, dtype=float)
    if heat.shape != img.shape[:2]:
        raise CnnkitError(f"the heat map has shape {heat.shape}, the image {img.shape[:2]}; "
                          "they must be the same size")
    import matplotlib

    cmap = matplotlib.colormaps["turbo"]
    fig = new_figure(9.6, 3.6)
    axes = [fig.add_subplot(1, 3, i + 1) for i in range(3)]
    _show_image(axes[0], img)
    axes[0].set_title(f"input, {img.shape[0]}×{img.shape[1]}", fontsize=9)
    interpolation = "bilinear" if smooth else "nearest"
    im = axes[1].imshow(heat, cmap=cmap, vmin=0, vmax=1, interpolation=interpolation)
    axes[1].set_axis_off()
    axes[1].set_title(f"{label} (1 = strongest)", fontsize=9)
    fig.colorbar(im, ax=axes[1], shrink=0.8)
    gray = img[..., :3].mean(axis=-1) if img.shape[-1] > 1 else img[..., 0]
    top = 255 if img.dtype == np.uint8 else 1.0
    axes[2].imshow(gray, cmap="gray", vmin=0, vmax=top, interpolation="nearest")
    axes[2].imshow(heat, cmap=cmap, vmin=0, vmax=1, alpha=0.5, interpolation=interpolation)
    if heat.max() > 0:
        r, c = np.unravel_index(int(heat.argmax()), heat.shape)
        axes[2].plot(c, r, marker="+", markersize=14, markeredgewidth=2.5, color="white")
        axes[2].plot(c, r, marker="+", markersize=12, markeredgewidth=1.2, color="black")
    axes[2].set_axis_off()
    axes[2].set_title("overlay (+ = maximum)" if heat.max() > 0 else "overlay (map is all 0)",
                      fontsize=9)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


# --- numbered tile grids --------------------------------------------------------------------

def _tile_figure(n: int, h: int, w: int, width_in: float, tile_max: float, tile_min: float,
                 colorbar: bool):
    """A figure and axes for n tiles of h×w in a near-square grid, with a band above each
    row of tiles for their numbers. Data units: a tile is 1 wide and h/w high."""
    rows, ncols = _grid_shape(n)
    aspect = h / w
    tile_in = min(tile_max, max(tile_min, width_in / ncols / max(1.0, aspect)))
    fontsize = min(9.0, max(5.0, tile_in * 72 * 0.2))
    band = fontsize * 1.5 / 72 / tile_in  # the numbers' height, in tile widths
    gap = 0.12
    grid = {"rows": rows, "ncols": ncols, "aspect": aspect, "band": band, "gap": gap,
            "fontsize": fontsize}
    fig = new_figure(max(3.5, ncols * (1 + gap) * tile_in + (1.4 if colorbar else 0.4)),
                  max(2.5, rows * (aspect + band) * tile_in + 0.9))
    return fig, fig.add_subplot(), grid


def _draw_tiles(ax, tiles: np.ndarray, grid: dict, **imshow):
    """Tiles (n, h, w[, 3]) row-major, each framed and numbered above; returns one image
    (all share one colour scale, so it stands for them in a colour bar).

    An image per tile, not one mosaic (`html_parts.mosaic`): the numbers then sit in a band of their
    own instead of over a tile's values, and a frame shows each tile's edge even where its
    values are the background's colour (zero weights are white)."""
    from matplotlib.patches import Rectangle

    aspect, band, gap = grid["aspect"], grid["band"], grid["gap"]
    pitch_y = aspect + band
    im = None
    for i, tile in enumerate(tiles):
        r, c = divmod(i, grid["ncols"])
        x0, top = c * (1 + gap), -r * pitch_y - band
        im = ax.imshow(tile, extent=(x0, x0 + 1, top - aspect, top), origin="upper",
                       interpolation="nearest", **imshow)
        ax.add_patch(Rectangle((x0, top - aspect), 1, aspect, fill=False, edgecolor="0.55",
                               linewidth=0.6))
        ax.text(x0 + 0.5, top + band * 0.12, str(i), ha="center", va="bottom",
                fontsize=grid["fontsize"], color="0.2")
    ax.set_xlim(-gap / 2, grid["ncols"] * (1 + gap) - gap / 2)
    ax.set_ylim(-grid["rows"] * pitch_y - gap / 2, 0)
    ax.set_aspect("equal")
    ax.set_axis_off()
    return im
