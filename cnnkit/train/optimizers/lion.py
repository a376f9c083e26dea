"""Lion, Keras 3's rule (Chen et al. 2023): w -= lr·sign(beta_1·m + (1 - beta_1)·g), then
m = beta_2·m + (1 - beta_2)·g. Every step moves each weight by exactly lr, so Lion wants a
rate 3-10 times smaller than Adam's."""
from __future__ import annotations

from cnnkit.errors import out_of_range
from cnnkit.train.optimizers.base import Optimizer, number, register


@register
class Lion(Optimizer):
    name = "lion"
    options = ("beta_1", "beta_2")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.99, **common):
        super().__init__(learning_rate, **common)
        self.beta_1 = number("beta_1", beta_1)  # 0 would be sign-SGD, which Keras refuses
        if self.beta_1 > 1:
            raise out_of_range("beta_1", beta_1, "a number > 0 and <= 1")
        self.beta_2 = number("beta_2", beta_2, 0.0, 1.0, strict=False)

    def slots(self, group):
        return {"momentum": 0.0}

    def update(self, group, params, grads, states):
        import torch

        momenta = [s["momentum"] for s in states]
        directions = torch._foreach_lerp(momenta, grads, 1 - group["beta_1"])
        torch._foreach_sign_(directions)
        torch._foreach_add_(params, directions, alpha=-group["lr"])
        torch._foreach_lerp_(momenta, grads, 1 - group["beta_2"])
