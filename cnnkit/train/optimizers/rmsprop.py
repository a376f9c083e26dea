"""RMSprop, Keras 3's rule: v = rho·v + (1 - rho)·g², w -= lr·g / sqrt(v + eps) (centered:
sqrt(v - ḡ² + eps), ḡ the average gradient); with momentum the buffer holds the step,
b = m·b + lr·g / sqrt(...), w -= b.

Epsilon goes inside the square root, where Keras's default 1e-7 floors the denominator at
sqrt(1e-7) ≈ 3e-4; torch.optim.RMSprop adds it after the root, so where gradients are tiny its
steps are up to 3,000 times larger with the same epsilon (tests/keras checks Keras's steps)."""
from __future__ import annotations

from cnnkit.train.optimizers.base import Optimizer, flag, number, register


@register
class RMSprop(Optimizer):
    name = "rmsprop"
    options = ("rho", "momentum", "epsilon", "centered")

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 **common):
        super().__init__(learning_rate, **common)
        self.rho = number("rho", rho, 0.0, 1.0)
        self.momentum = number("momentum", momentum, 0.0, 1.0, strict=False)
        self.epsilon = number("epsilon", epsilon)
        self.centered = flag("centered", centered)

    def slots(self, group):
        names = ["square_avg"] + ["momentum_buffer"] * bool(group["momentum"]) \
            + ["grad_avg"] * group["centered"]
        return dict.fromkeys(names, 0.0)

    def update(self, group, params, grads, states):
        import torch

        rho, momentum = group["rho"], group["momentum"]
        squares = [s["square_avg"] for s in states]
        torch._foreach_mul_(squares, rho)
        torch._foreach_addcmul_(squares, grads, grads, value=1 - rho)
        denominators = torch._foreach_add(squares, group["epsilon"])
        if group["centered"]:
            averages = [s["grad_avg"] for s in states]
            torch._foreach_mul_(averages, rho)
            torch._foreach_add_(averages, grads, alpha=1 - rho)
            torch._foreach_addcmul_(denominators, averages, averages, value=-1)
        torch._foreach_sqrt_(denominators)
        if not momentum:
            torch._foreach_addcdiv_(params, grads, denominators, value=-group["lr"])
            return
        buffers = [s["momentum_buffer"] for s in states]  # Keras keeps lr inside the buffer
        torch._foreach_mul_(buffers, momentum)
        torch._foreach_addcdiv_(buffers, grads, denominators, value=group["lr"])
        torch._foreach_sub_(params, buffers)
