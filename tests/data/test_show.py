"""save_image_grid and describe: the pictures and numbers `data show` gives."""
import numpy as np
import pytest
import torch
from PIL import Image

from cnnkit.data.base import Dataset
from cnnkit.data.show import describe, save_image_grid
from cnnkit.errors import CnnkitError


@pytest.mark.parametrize("c", [1, 3])
def test_grid_is_written_atomically_as_png(tmp_path, c):
    images = np.random.default_rng(0).integers(0, 256, (7, 10, 10, c), dtype=np.uint8)
    path = save_image_grid(images, [f"#{i}" for i in range(7)], tmp_path / "g.png", ncols=4,
                           suptitle="a long title " * 10)
    with Image.open(path) as im:
        w, h = im.size
    assert w > h  # 4 columns, 2 rows
    assert [p.name for p in tmp_path.iterdir()] == ["g.png"]


def test_grid_takes_torch_tensors_and_other_formats(tmp_path):
    save_image_grid(torch.zeros(3, 5, 5, 1, dtype=torch.uint8), ["a"], tmp_path / "g.svg")
    assert (tmp_path / "g.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(CnnkitError, match="unknown image file type '.gif'"):
        save_image_grid(np.zeros((1, 5, 5, 1), np.uint8), ["a"], tmp_path / "g.gif")


def test_describe_counts_and_pixel_statistics():
    x = torch.tensor([0, 255, 255, 0], dtype=torch.uint8).view(4, 1, 1, 1).expand(4, 2, 2, 3).contiguous()
    x[..., 1] = 100
    ds = Dataset("toy", ["off", "on"], x, torch.tensor([0, 1, 1, 1]),
                 x[:1], torch.tensor([0]), source="here")
    info = describe(ds)
    assert info["image_shape"] == [2, 2, 3] and info["num_classes"] == 2
    assert info["splits"]["train"] == {"count": 4, "class_counts": {"off": 1, "on": 3}}
    assert info["splits"]["test"]["count"] == 1
    px = info["pixels"]
    assert px["min"] == 0 and px["max"] == 255
    assert px["channel_mean"] == [127.5, 100.0, 127.5] and px["channel_std"] == [127.5, 0.0, 127.5]
    assert px["mean"] == pytest.approx((127.5 * 2 + 100) / 3, abs=1e-3)
