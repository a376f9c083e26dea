"""Every picture cnnkit draws, as PNG files: curves, confusion matrix, mistakes, probabilities
here; filters, feature maps and heat maps in `plots_inside` (imported here too, so
`plots.plot_filters` keeps working).

Figures are built with matplotlib's object API (`matplotlib.figure.Figure`, rendered by Agg)
rather than pyplot: no global figure registry to leak memory in long runs, no GUI backend, and
nothing changed for a user who has their own pyplot session open. matplotlib is imported
inside the functions, so `import cnnkit.look.plots` costs nothing. Each PNG is written through
`fsutil.atomic_path`: a failed or interrupted write leaves the previous file (or none).

Inputs are numpy arrays; images are uint8 (N, H, W, C) as everywhere in cnnkit.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cnnkit.errors import CnnkitError
from cnnkit.look.figures import (  # noqa: F401  (DPI: used by other modules)
    BAR_COLOR, DPI, PRED_COLOR, TRAIN_COLOR, TRUE_COLOR, VAL_COLOR, WRONG_COLOR, _as_images,
    _grid_shape, _names, _show_image, count_axis, new_figure, save_figure)
from cnnkit.look.plots_inside import (  # noqa: F401
    FEATURE_MAP_LAYOUTS, FILTER_LAYOUTS, plot_feature_maps, plot_filters, plot_heatmap)


# --- training curves ------------------------------------------------------------------------

def plot_history(history: dict[str, list[float]], path, best_epoch: int | None = None) -> Path:
    """Loss and accuracy per epoch, train vs validation, side by side (seed 000's two plots).

    `history` uses Keras's keys (`loss`, `val_loss`, `accuracy`, `val_accuracy`); a panel is
    drawn for each of loss and accuracy that is present. `best_epoch` counts from 1, as the
    epoch lines print, and is marked on both panels."""
    return save_figure(history_figure(history, best_epoch), path)


def history_figure(history: dict[str, list[float]], best_epoch: int | None = None):
    """plot_history's matplotlib Figure: epochs on whole-number ticks (count_axis)."""
    panels = [m for m in ("loss", "accuracy") if m in history or f"val_{m}" in history]
    if not panels:
        raise CnnkitError(f"history has no loss or accuracy to plot; keys: {sorted(history)}")
    n_epochs = max(len(history.get(k, [])) for m in panels for k in (m, f"val_{m}"))
    if best_epoch is not None and not 1 <= best_epoch <= n_epochs:
        raise CnnkitError(f"best_epoch {best_epoch} out of range; valid: 1..{n_epochs}")
    fig = new_figure(5 * len(panels), 3.6)
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
        count_axis(ax, 1, max(n_epochs, 1))
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    return fig


def plot_lr_find(lrs, losses, suggested: float, path) -> Path:
    """The learning-rate finder's smoothed loss against the rate (log scale), the suggested
    rate marked (cnnkit.train.lr_find)."""
    fig = new_figure(6, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(lrs, losses, color=TRAIN_COLOR)
    ax.axvline(suggested, color="gray", linestyle="--", linewidth=1,
               label=f"suggested {suggested:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    ax.set_title("learning-rate finder")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return save_figure(fig, path)


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
    fig = new_figure(side + 1, side)
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
    return save_figure(fig, path)


def plot_reliability(calibration: dict, path) -> Path:
    """The reliability diagram of `calibration` (cnnkit.look.metrics.calibration): each
    confidence bin's accuracy as a bar against the diagonal a calibrated model would follow,
    the gap to each bin's mean confidence hatched; below, how many samples each bin holds. Bars under the diagonal: the
    model is surer than it is right (over-confident)."""
    bins = calibration["reliability"]
    lower = np.array([b["lower"] for b in bins])
    width = np.array([b["upper"] for b in bins]) - lower
    filled = [i for i, b in enumerate(bins) if b["count"]]
    acc = np.array([bins[i]["accuracy"] for i in filled])
    conf = np.array([bins[i]["confidence"] for i in filled])
    fig = new_figure(5.0, 6.0)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.bar(lower[filled], acc, width[filled], align="edge", color=PRED_COLOR,
            edgecolor="white", label="accuracy")
    top.bar(lower[filled], np.abs(conf - acc), width[filled], bottom=np.minimum(acc, conf),
            align="edge", fill=False, hatch="//", edgecolor=WRONG_COLOR,
            label="gap to the mean confidence")
    top.plot([0, 1], [0, 1], "--", color="gray", label="calibrated")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    # above the axes: any bin, even the least sure, may have its bar reach the top
    top.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"reliability: ECE {calibration['ece']:.4f}, "
                  f"max error {calibration['max_calibration_error']:.4f}")
    bottom.bar(lower, [b["count"] for b in bins], width, align="edge", color=BAR_COLOR,
               edgecolor="white")
    bottom.set_xlabel("confidence (top-1 probability)")
    bottom.set_ylabel("samples")
    return save_figure(fig, path)


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
        fig = new_figure(4, 1.5)
        fig.text(0.5, 0.5, "no misclassified images", ha="center", va="center", fontsize=12)
        return save_figure(fig, path)
    names = class_names if class_names is not None else [str(i) for i in range(max(*true, *pred) + 1)]
    rows, ncols = _grid_shape(n, ncols or min(n, 8))
    # A fixed grid: each cell is a 1.5-inch image under 0.4 inch for a two-line title. Placed
    # by hand rather than by constrained layout, which was most of this plot's time (and
    # every full run draws it; bench/README.md).
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
    return save_figure(fig, path)


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
    fig = new_figure(pairs * (2.2 + bar_w), 2.6 * rows + (0.4 if n < n_total else 0))
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
    return save_figure(fig, path)


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
