"""`model.plot(path)` and `cnnkit.keras.utils.plot_model(...)` save the diagram and return it
as a Picture, which IPython's display machinery (what Jupyter and Colab run on a cell's value)
renders as the image: PNG bytes for .png, the SVG text for .svg."""
from __future__ import annotations

from pathlib import Path

import pytest

from cnnkit import Sequential
from cnnkit import layers as L


def _shown(value) -> dict:
    from IPython.core.formatters import DisplayFormatter

    data, _ = DisplayFormatter().format(value)
    return data


@pytest.fixture
def model():
    return Sequential([L.Input((8, 8, 1)), L.Conv2D(4, 3, name="first_conv"), L.Flatten(),
                       L.Dense(10, activation="softmax")])


def test_plot_returns_a_picture_jupyter_shows(model, tmp_path):
    png = model.plot(tmp_path / "model.png")
    assert png == tmp_path / "model.png" and isinstance(png, Path)  # still the path it wrote
    shown = _shown(png)
    assert shown["image/png"] == (tmp_path / "model.png").read_bytes()
    assert shown["image/png"].startswith(b"\x89PNG")
    svg = model.plot(tmp_path / "model.svg")
    text = _shown(svg)["image/svg+xml"]
    assert "<svg" in text and "first_conv" in text and "image/png" not in _shown(svg)


def test_keras_plot_model_returns_a_picture_too(tmp_path):
    from cnnkit.keras import layers, models, utils

    keras_model = models.Sequential([layers.Conv2D(4, 3, input_shape=(8, 8, 1)),
                                     layers.Flatten(), layers.Dense(3)])
    picture = utils.plot_model(keras_model, to_file=str(tmp_path / "model.png"), show_shapes=True)
    assert _shown(picture)["image/png"] == (tmp_path / "model.png").read_bytes()
