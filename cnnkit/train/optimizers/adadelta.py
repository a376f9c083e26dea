"""Adadelta, Keras 3's rule: a = rho·a + (1 - rho)·g², d = -sqrt(s + eps) / sqrt(a + eps)·g,
s = rho·s + (1 - rho)·d², w += lr·d. Keras's learning_rate (default 0.001) scales the step;
torch.optim.Adadelta's default is 1.0 and it puts eps in the same places."""
from __future__ import annotations

from cnnkit.train.optimizers.base import Optimizer, number, register


@register
class Adadelta(Optimizer):
    name = "adadelta"
    options = ("rho", "epsilon")

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, **common):
        super().__init__(learning_rate, **common)
        self.rho = number("rho", rho, 0.0, 1.0)
        self.epsilon = number("epsilon", epsilon)

    def slots(self, group):
        return {"accumulated_grad": 0.0, "accumulated_delta_var": 0.0}

    def update(self, group, params, grads, states):
        import torch

        rho, eps = group["rho"], group["epsilon"]
        squares = [s["accumulated_grad"] for s in states]
        deltas_sq = [s["accumulated_delta_var"] for s in states]
        torch._foreach_mul_(squares, rho)
        torch._foreach_addcmul_(squares, grads, grads, value=1 - rho)
        numerators = torch._foreach_add(deltas_sq, eps)
        torch._foreach_sqrt_(numerators)
        denominators = torch._foreach_add(squares, eps)
        torch._foreach_sqrt_(denominators)
        deltas = torch._foreach_mul(numerators, grads)  # -d: the step before the rate
        torch._foreach_div_(deltas, denominators)
        torch._foreach_mul_(deltas_sq, rho)
        torch._foreach_addcmul_(deltas_sq, deltas, deltas, value=1 - rho)
        torch._foreach_add_(params, deltas, alpha=-group["lr"])
