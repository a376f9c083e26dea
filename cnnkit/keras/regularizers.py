"""Keras's weight regularizers: `kernel_regularizer=regularizers.l2(0.01)` adds
0.01 · Σ w² over the layer's kernel to the loss (l1: 0.01 · Σ |w|), as Keras does."""
from __future__ import annotations

import math

from cnnkit.errors import out_of_range


class Regularizer:
    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        for key, value in (("l1", l1), ("l2", l2)):
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or value < 0):
                raise out_of_range(key, value, "a number >= 0")
        self.l1, self.l2 = float(l1), float(l2)

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}

    def __repr__(self):
        return f"{type(self).__name__}(l1={self.l1}, l2={self.l2})"


class L1(Regularizer):
    def __init__(self, l1: float = 0.01):
        super().__init__(l1=l1)


class L2(Regularizer):
    def __init__(self, l2: float = 0.01):
        super().__init__(l2=l2)


class L1L2(Regularizer):
    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        super().__init__(l1=l1, l2=l2)


l1, l2 = L1, L2  # noqa: E741  (Keras 3's lowercase names for the same classes)


def l1_l2(l1: float = 0.01, l2: float = 0.01) -> L1L2:  # Keras's defaults for the function
    return L1L2(l1, l2)
