"""Every plot writes one real PNG (readable, sized, not blank), atomically."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cnnkit.look import plots
from cnnkit.errors import CnnkitError

NAMES = ["cat", "dog", "bird"]
HISTORY = {"loss": [1.0, 0.6, 0.4, 0.35], "val_loss": [1.1, 0.7, 0.6, 0.65],
           "accuracy": [0.5, 0.7, 0.8, 0.85], "val_accuracy": [0.45, 0.65, 0.7, 0.68]}
RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, size=(4, 12, 12, 1), dtype=np.uint8)
PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.34, 0.33, 0.33]])

# RGB of matplotlib's tab colours as they land in the PNG.
BLUE, GREEN, RED = (31, 119, 180), (44, 160, 44), (214, 39, 40)


def png(path, min_w=200, min_h=150) -> np.ndarray:
    """Assert `path` is the only file in its folder (no temp left) and a real, non-blank PNG."""
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.width >= min_w and img.height >= min_h
        assert img.width <= 4000 and img.height <= 4000
        pixels = np.asarray(img.convert("RGB"))
    assert pixels.var() > 0
    return pixels


def has_color(pixels, rgb, tol=3) -> bool:
    return bool((np.abs(pixels.astype(int) - rgb).max(axis=-1) <= tol).any())


CASES = {
    "history": lambda p: plots.plot_history(HISTORY, p, best_epoch=3),
    "confusion": lambda p: plots.plot_confusion_matrix([[5, 1, 0], [2, 3, 1], [0, 0, 4]], NAMES, p),
    "confusion_normalized": lambda p: plots.plot_confusion_matrix(
        [[5, 1, 0], [2, 3, 1], [0, 0, 0]], NAMES, p, normalize=True),
    "mistakes": lambda p: plots.plot_mistakes(IMAGES[:3], [0, 1, 2], [1, 2, 0], [0.9, 0.8, 0.7],
                                              NAMES, p),
    "mistakes_rgb": lambda p: plots.plot_mistakes(
        RNG.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8), [0, 1], [1, 0], [0.9, 0.6], NAMES, p),
    "no_mistakes": lambda p: plots.plot_mistakes(IMAGES[:0], [], [], [], NAMES, p),
    "probabilities": lambda p: plots.plot_probabilities(IMAGES[:3], PROBS[:3], NAMES, p),
    "probabilities_top2": lambda p: plots.plot_probabilities(IMAGES[:1], PROBS[:1], NAMES, p, top_k=2),
    "filters_gray": lambda p: plots.plot_filters(RNG.normal(size=(3, 3, 1, 8)), p),
    "filters_rgb": lambda p: plots.plot_filters(RNG.normal(size=(5, 5, 3, 6)), p),
    "filters_deep": lambda p: plots.plot_filters(RNG.normal(size=(3, 3, 16, 4)), p),
    "filters_torch_layout": lambda p: plots.plot_filters(RNG.normal(size=(8, 1, 3, 3)), p,
                                                         layout="torch"),
    "feature_maps": lambda p: plots.plot_feature_maps(RNG.normal(size=(10, 14, 5)), p, title="conv1"),
    "feature_maps_vector": lambda p: plots.plot_feature_maps(RNG.random(40), p, title="dense"),
}


@pytest.mark.parametrize("name", CASES)
def test_each_plot_writes_a_valid_png(tmp_path, name):
    path = tmp_path / f"{name}.png"
    assert CASES[name](path) == path
    png(path)


def test_history_is_two_panels_train_vs_validation(tmp_path):
    pixels = png(plots.plot_history(HISTORY, tmp_path / "h.png"))
    assert pixels.shape[:2] == (360, 1000)  # two 5-inch panels side by side at 100 dpi
    assert has_color(pixels, BLUE) and has_color(pixels, (255, 127, 14))  # train, validation
    loss_only = {"loss": [1.0, 0.5], "val_loss": [1.2, 0.9]}
    assert png(plots.plot_history(loss_only, tmp_path / "h.png")).shape[:2] == (360, 500)


@pytest.mark.parametrize("history, best, message", [
    ({"lr": [0.1], "epochs": 3}, None, "no loss or accuracy to plot"),
    ({"loss": [1.0, 0.5], "lr": [0.1] * 9}, 3, "best_epoch 3 out of range; valid: 1..2"),
    (HISTORY, 5, "best_epoch 5 out of range; valid: 1..4"),
])
def test_history_bad_input(tmp_path, history, best, message):
    with pytest.raises(CnnkitError, match=message):
        plots.plot_history(history, tmp_path / "h.png", best_epoch=best)
    assert list(tmp_path.iterdir()) == []


def test_history_survives_a_diverged_epoch(tmp_path):
    history = {"loss": [1.0, float("inf"), float("nan"), 0.5], "val_loss": [1.1, 0.9, 0.8, 0.7]}
    png(plots.plot_history(history, tmp_path / "h.png", best_epoch=4))


def test_probabilities_highlight_the_prediction(tmp_path):
    right = png(plots.plot_probabilities(IMAGES[:1], PROBS[:1], NAMES, tmp_path / "p.png", true=[0]))
    assert has_color(right, BLUE) and not has_color(right, RED)
    (tmp_path / "p.png").unlink()
    wrong = png(plots.plot_probabilities(IMAGES[:1], PROBS[:1], NAMES, tmp_path / "p.png", true=[2]))
    assert has_color(wrong, RED) and has_color(wrong, GREEN) and not has_color(wrong, BLUE)


def test_probabilities_accept_grayscale_without_channel_axis(tmp_path):
    png(plots.plot_probabilities(IMAGES[:2, ..., 0], PROBS[:2], NAMES, tmp_path / "p.png"))


@pytest.mark.parametrize("call, message", [
    (lambda p: plots.plot_probabilities(IMAGES, PROBS, NAMES, p, top_k=4), "top_k 4 out of range"),
    (lambda p: plots.plot_probabilities(IMAGES, PROBS[:2], NAMES, p), "shape (4, classes)"),
    (lambda p: plots.plot_probabilities(IMAGES, PROBS, NAMES[:2], p), "2 class names for 3"),
    (lambda p: plots.plot_confusion_matrix([[1, 2]], NAMES, p), "must be square"),
    (lambda p: plots.plot_mistakes(IMAGES, [0], [1], [0.5], NAMES, p), "4 images but 1 true"),
    (lambda p: plots.plot_filters(np.zeros((3, 3)), p), "(kh, kw, in, out) for layout='keras'"),
    (lambda p: plots.plot_filters(np.zeros((3, 3)), p, layout="torch"), "(out, in, kh, kw)"),
    (lambda p: plots.plot_filters(np.zeros((3, 3, 1, 2)), p, layout="tf"), "unknown layout 'tf'"),
    (lambda p: plots.plot_feature_maps(np.zeros((2, 3, 4, 5)), p), "(H, W, C) or (D,)"),
    (lambda p: plots.plot_feature_maps(np.zeros((2, 3, 4, 5)), p, layout="torch"), "(C, H, W)"),
])
def test_bad_input_raises_one_line_and_writes_nothing(tmp_path, call, message):
    with pytest.raises(CnnkitError) as err:
        call(tmp_path / "x.png")
    assert message in str(err.value) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_partial_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def broken_savefig(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        plots.plot_history(HISTORY, tmp_path / "new.png")
    assert list(tmp_path.iterdir()) == []

    old = tmp_path / "curves.png"
    old.write_bytes(b"previous plot")
    with pytest.raises(OSError):
        plots.plot_history(HISTORY, old)
    assert list(tmp_path.iterdir()) == [old] and old.read_bytes() == b"previous plot"


def test_lazy_import_and_no_pyplot(tmp_path):
    # `import cnnkit.look.plots` must stay free for CLI start-up, and plotting must not touch pyplot
    # (a user's own pyplot session and backend stay as they were).
    code = (
        "import sys; import cnnkit.look.plots as p\n"
        "assert 'matplotlib' not in sys.modules\n"
        f"p.plot_history({{'loss': [1.0, 0.5]}}, {str(tmp_path / 'h.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    png(tmp_path / "h.png", min_w=100)


def test_probabilities_show_at_most_max_images(tmp_path):
    many = np.repeat(IMAGES, 10, axis=0)  # 40 images: 20 rows of 260 pixels if all were drawn
    capped = png(plots.plot_probabilities(many, np.repeat(PROBS, 10, axis=0), NAMES,
                                          tmp_path / "p.png", max_images=2))
    assert capped.shape[0] <= 300  # one row of two, plus the "first 2 of 40" line


def test_confusion_matrix_of_many_classes_stays_a_sensible_size(tmp_path, monkeypatch):
    sizes = []  # record the figure size instead of rendering 2000-pixel images (seconds)
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: sizes.append(fig.get_size_inches()))
    for k in (3, 12, 40):
        plots.plot_confusion_matrix(np.eye(k), [f"class{i}" for i in range(k)], tmp_path / "cm.png")
    widths = [w for w, _ in sizes]
    assert widths == sorted(widths) and widths[0] >= 5 and widths[-1] <= 21


# --- filter and feature-map grids: one framed tile per filter or channel ------------------------

def tile_boxes(pixels) -> list[tuple[slice, slice]]:
    """The grid's tiles in the PNG, row by row: the square blocks of ink (a frame and what is in
    it). Numbers and titles are smaller; the colour bar is tall and thin."""
    from scipy import ndimage

    labels, _ = ndimage.label((pixels < 245).any(axis=-1))
    boxes = [b for b in ndimage.find_objects(labels)
             if min(b[0].stop - b[0].start, b[1].stop - b[1].start) >= 20
             and 0.8 <= (b[0].stop - b[0].start) / (b[1].stop - b[1].start) <= 1.25]
    return sorted(boxes, key=lambda b: (round(b[0].start / 10), b[1].start))


def red_spot(pixels, box) -> tuple[float, float]:
    """Where the pure red pixels sit in `box`, as (row, column) fractions of its size."""
    tile = pixels[box]
    rows, cols = np.nonzero((np.abs(tile.astype(int) - RED_MAX).max(axis=-1) <= 10))
    assert rows.size, "no red in this tile"
    return rows.mean() / tile.shape[0], cols.mean() / tile.shape[1]


RED_MAX = (255, 0, 0)  # the top of the blue-white-red scale, and pure red in an RGB kernel


@pytest.mark.parametrize("channels", [1, 5, 32])
def test_feature_map_grid_has_one_tile_per_channel(tmp_path, channels):
    maps = RNG.random((9, 9, channels))  # (H, W, C), as feature_maps gives them
    maps[..., 0] = 0  # a dead channel is still a tile, and is counted in the title
    pixels = png(plots.plot_feature_maps(maps, tmp_path / "maps.png", title="conv2d"))
    assert len(tile_boxes(pixels)) == channels


def test_feature_map_layouts_draw_the_same_picture(tmp_path):
    maps = RNG.normal(size=(6, 8, 4))
    keras = png(plots.plot_feature_maps(maps, tmp_path / "a" / "m.png"))
    torch_ = png(plots.plot_feature_maps(maps.transpose(2, 0, 1), tmp_path / "b" / "m.png",
                                         layout="torch"))
    assert np.array_equal(keras, torch_)


def test_feature_maps_share_one_colour_scale(tmp_path):
    # channel 1 is channel 0 halved: on one scale it must look darker, not the same
    base = RNG.random((8, 8)) + 0.5
    maps = np.stack([base, base / 2], axis=-1)
    pixels = png(plots.plot_feature_maps(maps, tmp_path / "m.png"))
    first, second = (pixels[b].astype(float).mean() for b in tile_boxes(pixels))
    assert abs(first - second) > 10


@pytest.mark.parametrize("rgb", [False, True])
def test_filters_are_drawn_in_their_own_tile_right_way_up(tmp_path, rgb):
    # Keras layout (kh, kw, in, out), as model.get_weights() returns it: filter 1 has its one
    # weight top right, filter 2 bottom left (in the red channel for an RGB kernel)
    kernel = np.zeros((3, 3, 3 if rgb else 1, 4))
    kernel[0, 2, 0, 1] = 1.0
    kernel[2, 0, 0, 2] = 1.0
    pixels = png(plots.plot_filters(kernel, tmp_path / "k" / "filters.png"))
    tiles = tile_boxes(pixels)
    assert len(tiles) == 4
    top_right, bottom_left = red_spot(pixels, tiles[1]), red_spot(pixels, tiles[2])
    assert top_right[0] < 0.34 and top_right[1] > 0.66
    assert bottom_left[0] > 0.66 and bottom_left[1] < 0.34
    for i in (0, 3):
        with pytest.raises(AssertionError, match="no red"):
            red_spot(pixels, tiles[i])
    # PyTorch's (out, in, kh, kw) of the same kernel draws the same picture
    same = png(plots.plot_filters(kernel.transpose(3, 2, 0, 1), tmp_path / "t" / "filters.png",
                                  layout="torch"))
    assert np.array_equal(pixels, same)
