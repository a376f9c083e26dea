"""Every picture cnnkit draws, as PNG files: curves, confusion matrix, mistakes, probabilities,
filters and feature maps.

Figures are built with matplotlib's object API (`matplotlib.figure.Figure`, rendered by Agg)
rather than pyplot: no global figure registry to leak memory in long runs, no GUI backend, and
nothing changed for a user who has their own pyplot session open. matplotlib is imported
inside the functions, so `import cnnkit.look.plots` costs nothing. Each PNG is written through
`fsutil.atomic_path`: a failed or interrupted write leaves the previous file (or none).

Inputs are numpy arrays; images are uint8 (N, H, W, C) as everywhere in cnnkit.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from cnnkit.errors import CnnkitError
from cnnkit.fsutil import atomic_path

DPI = 100
TRAIN_COLOR, VAL_COLOR = "tab:blue", "tab:orange"
BAR_COLOR, PRED_COLOR, TRUE_COLOR, WRONG_COLOR = "silver", "tab:blue", "tab:green", "tab:red"


# --- figure plumbing ------------------------------------------------------------------------

def _figure(width_in: float, height_in: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")


def _save(fig, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return Path(path)


def _as_images(images) -> np.ndarray:
    """(N, H, W, C) with C in 1, 3 or 4; (N, H, W) is taken as grayscale."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise CnnkitError(f"images must have shape (N, H, W, C) with C = 1 or 3; got {images.shape}")
    return images


def _show_image(ax, img: np.ndarray) -> None:
    """Draw one (H, W, C) image at its true intensities (no contrast stretch)."""
    top = 255 if img.dtype == np.uint8 else 1.0
    if img.shape[-1] == 1:
        ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=top, interpolation="nearest")
    else:
        ax.imshow(img if top == 255 else np.clip(img, 0, 1), interpolation="nearest")
    ax.set_axis_off()


def _grid_shape(n: int, ncols: int | None = None) -> tuple[int, int]:
    ncols = ncols or math.ceil(math.sqrt(n))
    ncols = max(1, min(ncols, n))
    return math.ceil(n / ncols), ncols


def _mosaic(tiles: np.ndarray, ncols: int, fill: float) -> np.ndarray:
    """Tiles (n, h, w[, c]) laid out row-major in one array, 1-pixel `fill` gaps between them
    (one imshow is much faster than a subplot per filter, and reads like Chollet's grids)."""
    n, h, w = tiles.shape[:3]
    rows = math.ceil(n / ncols)
    out = np.full((rows * (h + 1) - 1, ncols * (w + 1) - 1) + tiles.shape[3:], fill, dtype=float)
    for i in range(n):
        r, c = divmod(i, ncols)
        out[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = tiles[i]
    return out


def _names(class_names, k: int) -> list[str]:
    if class_names is None:
        return [str(i) for i in range(k)]
    if len(class_names) != k:
        raise CnnkitError(f"{len(class_names)} class names for {k} classes")
    return [str(c) for c in class_names]


# --- training curves ------------------------------------------------------------------------

def plot_history(history: dict[str, list[float]], path, best_epoch: int | None = None) -> Path:
    """Loss and accuracy per epoch, train vs validation, side by side (seed 000's two plots).

    `history` uses Keras's keys (`loss`, `val_loss`, `accuracy`, `val_accuracy`); a panel is
    drawn for each of loss and accuracy that is present. `best_epoch` counts from 1, as the
    epoch lines print, and is marked on both panels."""
    from matplotlib.ticker import MaxNLocator

    panels = [m for m in ("loss", "accuracy") if m in history or f"val_{m}" in history]
    if not panels:
        raise CnnkitError(f"history has no loss or accuracy to plot; keys: {sorted(history)}")
    n_epochs = max(len(history.get(k, [])) for m in panels for k in (m, f"val_{m}"))
    if best_epoch is not None and not 1 <= best_epoch <= n_epochs:
        raise CnnkitError(f"best_epoch {best_epoch} out of range; valid: 1..{n_epochs}")
    fig = _figure(5 * len(panels), 3.6)
    for i, metric in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for key, label, color in ((metric, "train", TRAIN_COLOR),
                                  (f"val_{metric}", "validation", VAL_COLOR)):
            values = np.asarray(history.get(key, []), dtype=float)
            if values.size == 0:
                continue
            values[~np.isfinite(values)] = np.nan  # a diverged epoch leaves a gap, not a spike
            ax.plot(np.arange(1, len(values) + 1), values, label=label, color=color,
                    marker="o" if len(values) <= 30 else None, markersize=3)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="gray", linestyle="--", linewidth=1,
                       label=f"best epoch {best_epoch}")
        ax.set_title(f"model {metric}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    return _save(fig, path)


# --- evaluation -----------------------------------------------------------------------------

def plot_confusion_matrix(cm, class_names, path, normalize: bool = False) -> Path:
    """Heat map of the confusion matrix, rows = true class, columns = predicted class.

    `normalize=True` divides each row by its count, so the diagonal is each class's recall."""
    cm = np.asarray(cm, dtype=float)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise CnnkitError(f"confusion matrix must be square (K, K); got {cm.shape}")
    k = cm.shape[0]
    names = _names(class_names, k)
    if normalize:
        totals = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    side = min(max(4.0, 0.55 * k + 2.5), 20.0)  # 20 inches holds 100 classes, not 1000
    fig = _figure(side + 1, side)
    ax = fig.add_subplot()
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1 if normalize else max(cm.max(), 1))
    fig.colorbar(im, ax=ax, shrink=0.8)
    if k <= 30:  # beyond that the numbers would not fit in the cells
        fmt = "{:.2f}" if normalize else "{:.0f}"
        dark = im.norm.vmax / 2
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=8,
                    color="white" if v > dark else "black")
    size = min(10, max(4, 240 / k))  # tick labels shrink with the class count to stay apart
    ax.set_xticks(range(k), names, rotation=45, ha="right", rotation_mode="anchor", fontsize=size)
    ax.set_yticks(range(k), names, fontsize=size)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("confusion matrix" + (" (each row sums to 1)" if normalize else ""))
    return _save(fig, path)


def _mistake_title(true: str, pred: str, confidence: float) -> str:
    title = f"{true} → {pred} ({confidence:.2f})"
    return title if len(title) <= 22 else f"{true} →\n{pred} ({confidence:.2f})"


def plot_mistakes(images, true, pred, confidence, class_names, path,
                  ncols: int | None = None) -> Path:
    """Gallery of misclassified images titled "true → pred (p)", in the order given
    (`evaluate.worst_mistakes` gives the most confident first). No mistakes: says so.

    Not drawn with `data.show.save_image_grid`: its fixed 1.6-inch cells and tight_layout
    let two-line titles (long class names) overlap the row above; here rows are taller and
    constrained layout makes room."""
    images = _as_images(images)
    n = len(images)
    if not len(true) == len(pred) == len(confidence) == n:
        raise CnnkitError(f"{n} images but {len(true)} true, {len(pred)} predicted and "
                          f"{len(confidence)} confidence values")
    if n == 0:  # a perfect model still gets its file, so report links never break
        fig = _figure(4, 1.5)
        fig.text(0.5, 0.5, "no misclassified images", ha="center", va="center", fontsize=12)
        return _save(fig, path)
    names = class_names if class_names is not None else [str(i) for i in range(max(*true, *pred) + 1)]
    rows, ncols = _grid_shape(n, ncols or min(n, 8))
    # A fixed grid: each cell is a 1.5-inch image under 0.4 inch for a two-line title. Placed
    # by hand rather than by constrained layout, which measured ~60% of this plot's time (and
    # every full run draws it).
    cell_w, cell_h, title_h, top = 1.7, 1.9, 0.4, 0.4
    from matplotlib.figure import Figure

    width, height = cell_w * ncols, cell_h * rows + top
    fig = Figure(figsize=(width, height), dpi=DPI)
    for i in range(n):
        r, c = divmod(i, ncols)
        left = (c * cell_w + 0.1) / width
        bottom = (height - top - (r + 1) * cell_h) / height
        ax = fig.add_axes((left, bottom, (cell_w - 0.2) / width, (cell_h - title_h) / height))
        _show_image(ax, images[i])
        ax.set_title(_mistake_title(names[true[i]], names[pred[i]], float(confidence[i])),
                     fontsize=8)
    fig.suptitle("most confident mistakes: true → predicted (probability)", fontsize=10,
                 y=1 - 0.12 / height, va="top")
    return _save(fig, path)


# --- prediction -----------------------------------------------------------------------------

def plot_probabilities(images, probs, class_names, path, top_k: int | None = None,
                       true=None, max_images: int = 30, files=None) -> Path:
    """Each image beside a bar chart of its class probabilities (seed 002), predicted bar
    highlighted. A tile's title names its file (`files`, optional) and the predicted class;
    with `true` (labels, None for an image that has none) it reads "true A / pred B", green
    when right and red when wrong, and the bars colour a wrong prediction red and the true
    class green. `top_k` shows only the k most probable classes, highest first. Past
    `max_images` the figure shows the first ones and says "first n of N" on top."""
    images = _as_images(images)
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2 or len(probs) != len(images):
        raise CnnkitError(f"probabilities must have shape ({len(images)}, classes); got {probs.shape}")
    k = probs.shape[1]
    names = _names(class_names, k)
    if top_k is not None and not 1 <= top_k <= k:
        raise CnnkitError(f"top_k {top_k} out of range; valid: 1..{k}")
    n_total = len(images)
    for what, given in (("labels", true), ("file names", files)):
        if given is not None and len(given) != n_total:
            raise CnnkitError(f"{len(given)} {what} for {n_total} images")
    n = min(n_total, max_images)
    if n == 0:
        raise CnnkitError("no images to plot")
    shown = top_k or k
    pairs = 1 if n == 1 else 2 if n <= 8 else 3  # image+bars pairs per row
    rows = math.ceil(n / pairs)
    bar_w = max(3.0, 0.35 * shown + 1)
    fig = _figure(pairs * (2.2 + bar_w), 2.6 * rows + (0.4 if n < n_total else 0))
    grid = fig.add_gridspec(rows, 2 * pairs, width_ratios=[2.2, bar_w] * pairs)
    for i in range(n):
        r, c = divmod(i, pairs)
        p = probs[i]
        pred = int(p.argmax())
        label = None if true is None or true[i] is None else int(true[i])
        ax = fig.add_subplot(grid[r, 2 * c])
        _show_image(ax, images[i])
        # Pinned to the top of its cell: centred, the image (and its title) moves once the
        # layout has made room for the title, and a three-line title is cut off at the top.
        ax.set_anchor("N")
        _tile_title(ax, None if files is None else str(files[i]), names, pred, p[pred], label)
        _probability_bars(fig.add_subplot(grid[r, 2 * c + 1]), p, names, pred, label, top_k)
    if n < n_total:
        fig.suptitle(f"first {n} of {n_total} images", fontsize=10)
    return _save(fig, path)


def _shorten(text: str, width: int = 24) -> str:
    """Long file names keep their start and their end (the extension, a trailing number)."""
    if len(text) <= width:
        return text
    keep = width - 1
    return f"{text[:keep - keep // 2]}…{text[len(text) - keep // 2:]}"


def _tile_title(ax, file, names, pred: int, confidence: float, label) -> None:
    lines = [] if file is None else [_shorten(file)]
    if label is None:
        lines.append(f"pred {names[pred]} ({confidence:.2f})")
        color = "black"
    else:
        lines += [f"true {names[label]}", f"pred {names[pred]} ({confidence:.2f})"]
        color = TRUE_COLOR if label == pred else WRONG_COLOR
    ax.set_title("\n".join(lines), fontsize=9, color=color)


def _probability_bars(ax, p, names, pred, label, top_k) -> None:
    order = np.argsort(-p, kind="stable")[:top_k] if top_k else np.arange(len(p))
    colors = []
    for c in order:
        if c == pred:
            colors.append(PRED_COLOR if label is None or label == pred else WRONG_COLOR)
        else:
            colors.append(TRUE_COLOR if c == label else BAR_COLOR)
    x = np.arange(len(order))
    ax.bar(x, p[order], color=colors)
    ax.set_ylim(0, 1.08)
    ax.set_xticks(x, [names[c] for c in order], rotation=45, ha="right",
                  rotation_mode="anchor", fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_ylabel("probability", fontsize=8)
    pos = int(np.flatnonzero(order == pred)[0])
    ax.text(pos, p[pred] + 0.01, f"{p[pred]:.2f}", ha="center", va="bottom", fontsize=7)


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
    return _save(fig, path)


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
    return _save(fig, path)


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
    fig = _figure(9.6, 3.6)
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
    return _save(fig, path)


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
    fig = _figure(max(3.5, ncols * (1 + gap) * tile_in + (1.4 if colorbar else 0.4)),
                  max(2.5, rows * (aspect + band) * tile_in + 0.9))
    return fig, fig.add_subplot(), grid


def _draw_tiles(ax, tiles: np.ndarray, grid: dict, **imshow):
    """Tiles (n, h, w[, 3]) row-major, each framed and numbered above; returns one image
    (all share one colour scale, so it stands for them in a colour bar).

    An image per tile, not one mosaic (`_mosaic`): the numbers then sit in a band of their
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
