"""`cnnkit predict --plot`: each tile names its file and the predicted class; images in a folder
named after one of the model's classes are labelled, and their tiles say true vs predicted,
green when right and red when wrong."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from cnnkit.cli import main
from cnnkit.look import plots

NAMES = [f"digit{i}" for i in range(10)]
GREEN, RED = (44, 160, 44), (214, 39, 40)  # matplotlib's tab:green and tab:red in the PNG


def has_color(pixels, rgb, tol=3) -> bool:
    return bool((np.abs(pixels.astype(int) - rgb).max(axis=-1) <= tol).any())


def title_band(path) -> np.ndarray:
    """The top rows of a one-image figure: the tile's title, above the image and the bars."""
    with Image.open(path) as img:
        pixels = np.asarray(img.convert("RGB"))
    return pixels[: int(pixels.shape[0] * 0.08)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import cnnkit

    torch.manual_seed(0)
    model = cnnkit.create_model("seed003-cnn", input_shape=(8, 8, 1), num_classes=10)
    model.class_names = NAMES
    path = tmp_path_factory.mktemp("model") / "digits-model"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """Three 8x8 digits as PNG files, loose in one folder."""
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("loose")
    digits = load_digits()
    for i in range(3):
        Image.fromarray((digits.images[i] * 16).clip(0, 255).astype(np.uint8)).save(
            folder / f"scan_{i}.png")
    return sorted(folder.iterdir())


def predict(capsys, *argv) -> list[dict]:
    assert main(["predict", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_loose_images_are_not_labelled(capsys, model_dir, pictures, tmp_path):
    out = tmp_path / "tiles.png"
    results = predict(capsys, model_dir, pictures[0].parent, "--plot", out)
    assert [r["image"] for r in results] == [str(p) for p in pictures]
    assert all("true" not in r for r in results)
    band = title_band(out)
    assert band.min() < 100  # a (black) title is drawn
    assert not has_color(band, GREEN) and not has_color(band, RED)


def test_images_in_class_folders_show_true_vs_predicted(capsys, model_dir, pictures, tmp_path):
    (first,) = predict(capsys, model_dir, pictures[0])
    pred = first["top"][0]["class"]
    other = next(n for n in NAMES if n != pred)
    right, wrong = tmp_path / "test" / pred / "right.png", tmp_path / "test" / other / "wrong.png"
    for path in (right, wrong):
        path.parent.mkdir(parents=True)
        path.write_bytes(pictures[0].read_bytes())

    assert main(["predict", str(model_dir), str(tmp_path / "test")]) == 0
    text = capsys.readouterr().out
    assert f"right.png: {pred} " in text and f"(true {pred})" in text and f"(true {other})" in text
    assert "Right: 1 of 2 labelled images" in text
    results = predict(capsys, model_dir, tmp_path / "test")
    assert sorted(r["true"] for r in results) == sorted([pred, other])

    predict(capsys, model_dir, right, "--plot", tmp_path / "right-tile.png")
    band = title_band(tmp_path / "right-tile.png")
    assert has_color(band, GREEN) and not has_color(band, RED)
    predict(capsys, model_dir, wrong, "--plot", tmp_path / "wrong-tile.png")
    band = title_band(tmp_path / "wrong-tile.png")
    assert has_color(band, RED) and not has_color(band, GREEN)


def test_a_folder_that_is_no_class_name_labels_nothing(capsys, model_dir, pictures, tmp_path):
    folder = tmp_path / "test" / "not-a-class"
    folder.mkdir(parents=True)
    (folder / "x.png").write_bytes(pictures[0].read_bytes())
    assert "true" not in predict(capsys, model_dir, folder)[0]


def test_tiles_mix_labelled_and_unlabelled_images(tmp_path):
    images = np.zeros((2, 8, 8, 1), dtype=np.uint8)
    probs = np.full((2, 10), 0.05)
    probs[:, 3] = 0.55
    path = plots.plot_probabilities(images, probs, NAMES, tmp_path / "p.png", true=[3, None],
                                    files=["a.png", "b.png"])
    with Image.open(path) as img:
        assert img.format == "PNG"


@pytest.mark.parametrize("kwargs, message", [
    ({"files": ["only-one.png"]}, "1 file names for 2 images"),
    ({"true": [1, 2, 3]}, "3 labels for 2 images"),
])
def test_tile_arguments_must_match_the_images(tmp_path, kwargs, message):
    from cnnkit.errors import CnnkitError

    with pytest.raises(CnnkitError, match=message):
        plots.plot_probabilities(np.zeros((2, 8, 8, 1), np.uint8), np.full((2, 10), 0.1), NAMES,
                                 tmp_path / "p.png", **kwargs)
