"""Adagrad, Keras 3's rule: a = a + g², w -= lr·g / sqrt(a + eps), the accumulator starting at
`initial_accumulator_value` (torch.optim's puts eps after the square root and starts at 0)."""
from __future__ import annotations

from cnnkit.train.optimizers.base import Optimizer, number, register


@register
class Adagrad(Optimizer):
    name = "adagrad"
    options = ("initial_accumulator_value", "epsilon")

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 **common):
        super().__init__(learning_rate, **common)
        self.initial_accumulator_value = number("initial_accumulator_value",
                                                initial_accumulator_value, strict=False)
        self.epsilon = number("epsilon", epsilon)

    def slots(self, group):
        return {"sum": group["initial_accumulator_value"]}

    def update(self, group, params, grads, states):
        import torch

        sums = [s["sum"] for s in states]
        torch._foreach_addcmul_(sums, grads, grads)
        denominators = torch._foreach_add(sums, group["epsilon"])
        torch._foreach_sqrt_(denominators)
        torch._foreach_addcdiv_(params, grads, denominators, value=-group["lr"])
