"""`datasets.mnist.load_data()` and friends: numpy tuples exactly as Keras returns them,
`(x_train, y_train), (x_test, y_test)`, uint8 images (N, 28, 28) or (N, 32, 32, 3) for CIFAR-10,
uint8 labels (N,) or (N, 1) for CIFAR-10. The files come from cnnkit's data layer: found on the
machine, in cnnkit's cache, or downloaded with checksums (cnnkit.data.mnist); offline without
them it is one line saying where to put them."""
from __future__ import annotations

import numpy as np


class _Dataset:
    def __init__(self, name: str, keras_name: str):
        self.name, self.__name__ = name, keras_name

    def load_data(self, path=None):
        """((x_train, y_train), (x_test, y_test)) as numpy uint8 arrays, as Keras gives them.
        `path` is accepted for Keras's signature; the files are where cnnkit finds them."""
        from cnnkit.data.mnist import load_mnist_family

        ds = load_mnist_family(self.name)
        out = []
        for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
            x, y = x.numpy(), y.numpy().astype(np.uint8)
            if x.shape[-1] == 1:
                x = x[..., 0]  # Keras: (N, 28, 28) for the gray sets
            else:
                y = y[:, None]  # Keras: CIFAR-10 labels are (N, 1)
            out.append((np.ascontiguousarray(x), y))
        return tuple(out)

    def __repr__(self):
        return f"<cnnkit.keras.datasets.{self.__name__}>"


mnist = _Dataset("mnist", "mnist")
fashion_mnist = _Dataset("fashion-mnist", "fashion_mnist")
cifar10 = _Dataset("cifar10", "cifar10")
__all__ = ["mnist", "fashion_mnist", "cifar10"]
