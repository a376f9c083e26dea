"""Adamax, Keras 3's rule: m = beta_1·m + (1 - beta_1)·g, u = max(beta_2·u, |g|),
w -= lr·m / ((1 - beta_1^t)·(u + eps)) (torch.optim.Adamax adds eps inside the max)."""
from __future__ import annotations

from cnnkit.train.optimizers.base import Optimizer, register


@register
class Adamax(Optimizer):
    name = "adamax"
    options = ("beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **common):
        super().__init__(learning_rate, **common)
        self.moments(beta_1, beta_2, epsilon)

    def slots(self, group):
        return {"momentum": 0.0, "norm": 0.0}

    def update(self, group, params, grads, states):
        import torch

        beta_1 = group["beta_1"]
        t = float(states[0]["step"])
        momenta, norms = [s["momentum"] for s in states], [s["norm"] for s in states]
        torch._foreach_lerp_(momenta, grads, 1 - beta_1)
        torch._foreach_mul_(norms, group["beta_2"])
        torch._foreach_maximum_(norms, torch._foreach_abs(grads))
        denominators = torch._foreach_add(norms, group["epsilon"])
        torch._foreach_addcdiv_(params, momenta, denominators,
                                value=-group["lr"] / (1 - beta_1 ** t))
