"""`datasets.mnist.load_data()` and friends: numpy tuples exactly as Keras returns them,
`(x_train, y_train), (x_test, y_test)`, uint8 images (N, 28, 28) or (N, 32, 32, 3) for CIFAR,
uint8 labels (N,) or (N, 1) for CIFAR-10; CIFAR-100's are (N, 1) int64, as Keras 3's
`cifar100.load_data(label_mode="fine"|"coarse")` returns them. The files come from cnnkit's
data layer: found on the machine, in cnnkit's cache, or downloaded with checksums
(cnnkit.data.mnist); offline without them it is one line saying where to put them."""
from __future__ import annotations

import numpy as np

from cnnkit.errors import CnnkitError


class _Dataset:
    def __init__(self, name: str, keras_name: str):
        self.name, self.__name__ = name, keras_name

    def load_data(self, path=None, **kwargs):
        """((x_train, y_train), (x_test, y_test)) as numpy uint8 arrays, as Keras gives them.
        `path` is accepted for Keras's signature; the files are where cnnkit finds them."""
        from cnnkit.data.mnist import load_mnist_family

        label_mode = self._label_mode(**kwargs)
        ds = load_mnist_family(self.name)
        out = []
        for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
            x, y = x.numpy(), y.numpy().astype(np.uint8)
            if label_mode is not None:  # CIFAR-100: Keras reshapes its lists of ints
                labels = ds.info["coarse_labels"][split] if label_mode == "coarse" else y
                y = np.asarray(labels, dtype=np.int64)
            if x.shape[-1] == 1:
                x = x[..., 0]  # Keras: (N, 28, 28) for the gray sets
            else:
                y = y[:, None]  # Keras: CIFAR labels are (N, 1)
            out.append((np.ascontiguousarray(x), y))
        return tuple(out)

    def _label_mode(self, **kwargs):
        if kwargs:
            raise CnnkitError(f"{self.__name__}.load_data() got an unexpected argument "
                              f"{next(iter(kwargs))}=...; valid: path")
        return None

    def __repr__(self):
        return f"<cnnkit.keras.datasets.{self.__name__}>"


class _Cifar100(_Dataset):
    def _label_mode(self, label_mode="fine"):
        if label_mode not in ("fine", "coarse"):
            raise CnnkitError('`label_mode` must be one of `"fine"`, `"coarse"`. '
                              f"Received: label_mode={label_mode}.")
        return label_mode


mnist = _Dataset("mnist", "mnist")
fashion_mnist = _Dataset("fashion-mnist", "fashion_mnist")
cifar10 = _Dataset("cifar10", "cifar10")
cifar100 = _Cifar100("cifar100", "cifar100")
__all__ = ["mnist", "fashion_mnist", "cifar10", "cifar100"]
