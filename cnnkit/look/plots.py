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
    fig = _figure(1.7 * ncols, 1.9 * rows + 0.4)
    for i in range(n):
        ax = fig.add_subplot(rows, ncols, i + 1)
        _show_image(ax, images[i])
        ax.set_title(_mistake_title(names[true[i]], names[pred[i]], float(confidence[i])),
                     fontsize=8)
    fig.suptitle("most confident mistakes: true → predicted (probability)", fontsize=10)
    return _save(fig, path)


# --- prediction -----------------------------------------------------------------------------

def plot_probabilities(images, probs, class_names, path, top_k: int | None = None,
                       true=None, max_images: int = 30) -> Path:
    """Each image beside a bar chart of its class probabilities (seed 002), predicted bar
    highlighted. `top_k` shows only the k most probable classes, highest first; `true`
    (optional labels) colours a wrong prediction red and the true class green. Past
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
        label = None if true is None else int(true[i])
        ax = fig.add_subplot(grid[r, 2 * c])
        _show_image(ax, images[i])
        title = f"{names[pred]} ({p[pred]:.2f})" if label is None else \
            f"true {names[label]}\npred {names[pred]} ({p[pred]:.2f})"
        ax.set_title(title, fontsize=9)
        _probability_bars(fig.add_subplot(grid[r, 2 * c + 1]), p, names, pred, label, top_k)
    if n < n_total:
        fig.suptitle(f"first {n} of {n_total} images", fontsize=10)
    return _save(fig, path)


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

def plot_filters(weight, path) -> Path:
    """The first conv layer's kernels as a grid, weight (out, in, kh, kw) as PyTorch holds it.

    RGB input: each kernel drawn in colour, scaled to its own range. One input channel: all
    kernels on one blue-white-red scale centred on 0, so weights compare across filters.
    Other layers (in > 3): the mean over input channels, said in the title."""
    w = np.asarray(weight, dtype=float)
    if w.ndim != 4:
        raise CnnkitError(f"conv weight must have shape (out, in, kh, kw); got {w.shape}")
    out, cin, kh, kw = w.shape
    rows, ncols = _grid_shape(out)
    tile_in = min(0.6, 10 / ncols)
    fig = _figure(max(3.5, ncols * tile_in + 1.2), max(3.0, rows * tile_in + 0.8))
    ax = fig.add_subplot()
    title = f"{out} filters, {kh}×{kw}"
    if cin == 3:
        tiles = w.transpose(0, 2, 3, 1)  # (out, kh, kw, 3)
        lo = tiles.min(axis=(1, 2, 3), keepdims=True)
        span = tiles.max(axis=(1, 2, 3), keepdims=True) - lo
        tiles = np.divide(tiles - lo, span, out=np.full_like(tiles, 0.5), where=span > 0)
        ax.imshow(_mosaic(tiles, ncols, fill=1.0), interpolation="nearest")
    else:
        tiles = w[:, 0] if cin == 1 else w.mean(axis=1)
        if cin != 1:
            title += f", mean over {cin} input channels"
        import matplotlib

        cmap = matplotlib.colormaps["bwr"].with_extremes(bad="white")
        top = max(float(np.abs(tiles).max()), 1e-12)
        im = ax.imshow(_mosaic(tiles, ncols, fill=np.nan), cmap=cmap, vmin=-top, vmax=top,
                       interpolation="nearest")
        fig.colorbar(im, ax=ax, shrink=0.8, label="weight")
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_feature_maps(maps, path, title: str | None = None) -> Path:
    """One layer's output for one image, maps (C, H, W), as a grid of channels.

    Each map is standardized on its own (as Chollet's seed 004 grids are), so a weak but
    structured response is as visible as a strong one; a dead channel shows as flat colour."""
    maps = np.asarray(maps, dtype=float)
    if maps.ndim == 4 and maps.shape[0] == 1:
        maps = maps[0]  # one image with its batch axis
    if maps.ndim != 3:
        raise CnnkitError(f"feature maps must have shape (C, H, W); got {maps.shape}")
    c, h, w = maps.shape
    mean = maps.mean(axis=(1, 2), keepdims=True)
    std = maps.std(axis=(1, 2), keepdims=True)
    shown = np.clip((maps - mean) / (std + 1e-5) * 64 + 128, 0, 255)
    rows, ncols = _grid_shape(c)
    tile_in = min(1.2, 12 / ncols)
    aspect = h / w
    fig = _figure(max(3.5, ncols * tile_in + 0.4), max(2.5, rows * tile_in * aspect + 0.8))
    ax = fig.add_subplot()
    import matplotlib

    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    ax.imshow(_mosaic(shown, ncols, fill=np.nan), cmap=cmap, vmin=0, vmax=255,
              interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title or f"{c} feature maps, {h}×{w}", fontsize=10)
    return _save(fig, path)
