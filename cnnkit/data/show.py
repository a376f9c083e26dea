"""Look at a dataset: numbers (`describe`) and pictures (`save_image_grid`).

`save_image_grid` is the one way cnnkit draws a grid of images with titles (dataset samples,
augmentation variants, the worst mistakes of a model), so they all look alike.
"""
from __future__ import annotations

import math
import os
import textwrap

from cnnkit.errors import CnnkitError, one_of

GRID_FORMATS = [".png", ".jpg", ".jpeg", ".pdf", ".svg"]


def check_grid_path(path: str | os.PathLike):
    """`path` as a Path when save_image_grid can draw that file type; checked before any slow
    work, so a wrong name costs nothing."""
    from pathlib import Path

    path = Path(path)
    if path.suffix.lower() not in GRID_FORMATS:
        raise one_of("image file type", path.suffix or str(path), GRID_FORMATS)
    return path


def save_image_grid(images, titles: list[str], path: str | os.PathLike, ncols: int | None = None,
                    suptitle: str | None = None):
    """Write images (N, H, W, C) uint8 as a grid, each with its title, to `path` (atomically).

    Gray images (C=1) are drawn with a gray colour map on the fixed 0..255 scale, so a faint
    image looks faint rather than stretched to full contrast."""
    import numpy as np
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg canvas on save

    from cnnkit.fsutil import atomic_path

    path = check_grid_path(path)
    images = np.asarray(images.numpy() if hasattr(images, "numpy") else images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be (N, H, W, C) with C 1 or 3, got {images.shape}")
    n = len(images)
    if n == 0:
        raise CnnkitError("no images to draw")
    titles = list(titles) + [""] * (n - len(titles))
    ncols = max(1, min(n, ncols or math.ceil(math.sqrt(n))))
    nrows = math.ceil(n / ncols)
    cell = 1.6  # inches per image: big enough for a 28x28 digit and a short title
    if suptitle:  # wrapped to the figure's width (~10 characters per inch at 10 pt)
        suptitle = textwrap.fill(suptitle, width=max(24, int(cell * ncols * 10)))
    head = 0.3 * (suptitle.count("\n") + 1.5) if suptitle else 0.0
    fig = Figure(figsize=(cell * ncols, cell * nrows + head), dpi=100)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        img = images[i]
        if img.shape[-1] == 1:
            ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        else:
            ax.imshow(img, interpolation="nearest")
        if titles[i]:
            ax.set_title(str(titles[i]), fontsize=9)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lower().lstrip(".").replace("jpg", "jpeg"))
    return path


def _pixel_stats(x) -> dict:
    """Mean, std, min, max over all pixels (0..255), plus per channel for colour images."""
    from cnnkit.data.batches import pixel_sums

    total, sq, count = pixel_sums(x)
    c = len(total)
    mean = total / count
    std = (sq / count - mean * mean).clamp_min(0).sqrt()
    all_mean = float(total.sum() / (count * c))
    all_std = math.sqrt(max(0.0, float(sq.sum() / (count * c)) - all_mean ** 2))
    stats = {"mean": round(all_mean, 3), "std": round(all_std, 3),
             "min": int(x.min()), "max": int(x.max())}
    if c > 1:
        stats["channel_mean"] = [round(float(m), 3) for m in mean]
        stats["channel_std"] = [round(float(s), 3) for s in std]
    return stats


def describe(dataset) -> dict:
    """What `cnnkit data show` prints: sizes, shape, classes and counts, pixel statistics."""
    import torch

    splits = {}
    for split, y in (("train", dataset.y_train), ("test", dataset.y_test)):
        if y is None:
            continue
        counts = torch.bincount(y, minlength=dataset.num_classes).tolist()
        splits[split] = {
            "count": len(y),
            "class_counts": dict(zip(dataset.class_names, counts)),
        }
    out = {
        "name": dataset.name,
        "source": dataset.source,
        "image_shape": list(dataset.image_shape),
        "num_classes": dataset.num_classes,
        "class_names": list(dataset.class_names),
        "splits": splits,
        "pixels": _pixel_stats(dataset.x_train),  # of the training images, in 0..255
    }
    if dataset.info.get("skipped"):
        out["skipped"] = list(dataset.info["skipped"])
    from cnnkit.data.balance import imbalance_note

    warning = imbalance_note(list(splits["train"]["class_counts"].values()), dataset.class_names)
    if warning:  # the largest class 3x the smallest or more: name the flags that help
        out["imbalance"] = warning
    return out
