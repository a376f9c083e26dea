"""Small folders of real images (scikit-learn's 8×8 digits) for flow_from_directory."""
from __future__ import annotations

import numpy as np


def write_digit_folders(root, classes=(0, 1, 2), per_class=(30, 10), size=24):
    """root/train/<digit>/*.png and root/validation/<digit>/*.png, RGB, `size`×`size`."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for k in classes:
        images = digits.images[digits.target == k]
        start = 0
        for split, count in zip(("train", "validation"), per_class):
            folder = root / split / str(k)
            folder.mkdir(parents=True)
            for i, img in enumerate(images[start:start + count]):
                pixels = (img * (255 / 16)).astype(np.uint8)
                Image.fromarray(pixels).convert("RGB").resize((size, size)).save(folder / f"{i}.png")
            start += count
    return root
