"""The plumbing every cnnkit picture shares: a matplotlib Figure (object API, Agg), its atomic
PNG write, image tiles drawn at their true intensities and grid shapes.

Every plotting function returns the file it wrote as a `Picture`: a `pathlib.Path` that
Jupyter (Colab, JupyterLab, VS Code) shows as the image when it is a cell's value, so
`plots.plot_history(h, "curves.png")` both saves the file and displays it inline.

matplotlib is imported inside the functions, so importing this module costs nothing."""
from __future__ import annotations

import io
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

def new_figure(width_in: float, height_in: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")


class Picture(type(Path())):  # Path's concrete class (PosixPath/WindowsPath): Python 3.11 needs it
    """The path of a PNG (or SVG) that cnnkit wrote; a notebook displays it as the image. Everywhere
    else it is the plain Path it always was (`/`, `.read_bytes()`, `==` a Path, os.fspath)."""

    def _repr_png_(self) -> bytes | None:
        # IPython's PNG formatter: None (a folder derived by `.parent`, a file since removed)
        # lets it fall back to the text repr
        if self.suffix.lower() != ".png" or not self.is_file():
            return None
        return self.read_bytes()

    def _repr_svg_(self) -> str | None:
        # a model diagram saved as .svg (model.plot("model.svg")) shows inline too
        if self.suffix.lower() != ".svg" or not self.is_file():
            return None
        return self.read_text(encoding="utf-8")


def count_axis(ax, first: int, last: int, axis: str = "x") -> None:
    """An axis of counted things (epochs, folds, trials numbered first..last): whole-number
    ticks only, each one labelled while there are few; one epoch is a point in the middle of
    the axis, never a fractional axis of 0.945 ... 1.055."""
    from matplotlib.ticker import MaxNLocator

    which = ax.xaxis if axis == "x" else ax.yaxis
    if last - first < 12:  # few: every one of them, half a step of margin each side
        (ax.set_xlim if axis == "x" else ax.set_ylim)(first - 0.5, last + 0.5)
        which.set_ticks(range(first, last + 1))
    else:
        which.set_major_locator(MaxNLocator(integer=True))


def png_bytes(fig) -> bytes:
    """The figure as PNG, in memory (for a page that holds its images)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def save_figure(fig, path: str | os.PathLike) -> Picture:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return Picture(path)


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


def _names(class_names, k: int) -> list[str]:
    if class_names is None:
        return [str(i) for i in range(k)]
    if len(class_names) != k:
        raise CnnkitError(f"{len(class_names)} class names for {k} classes")
    return [str(c) for c in class_names]
