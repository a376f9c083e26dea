"""Stand-ins for the downloads the tutorials in tests/keras/test_tutorial*.py make: small local
arrays of the same shapes and dtypes."""
from __future__ import annotations

import numpy as np


def digits(size: int, n: int):
    """sklearn's 8x8 digits as MNIST's uint8 (n, size, size) images (each pixel a 3x3 block,
    centered), with their uint8 labels: stands in for keras.datasets.mnist's download."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.kron(d.images[:n], np.ones((3, 3))) * (255 / 16)  # (n, 24, 24)
    pad = (size - 24) // 2
    x = np.pad(x, ((0, 0), (pad, size - 24 - pad), (pad, size - 24 - pad)))
    return x.round().astype("uint8"), d.target[:n].astype("uint8")


def pets(n: int, size: int):
    """Stands in for the cats-vs-dogs folders: n uint8 RGB images, the 'dogs' (label 1) brighter
    on their left half, so that a model can tell them apart."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    x = rng.integers(0, 128, (n, size, size, 3))
    x[y == 1, :, : size // 2] += 127
    return x.astype("uint8"), y
