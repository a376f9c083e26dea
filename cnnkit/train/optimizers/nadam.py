"""Nadam, Keras 3's rule (Dozat's, with its momentum schedule u_t = beta_1·(1 - 0.5·0.96^t)):
m and v as Adam's, m̂ = u_{t+1}·m / (1 - Πu up to t+1) + (1 - u_t)·g / (1 - Πu up to t),
v̂ = v / (1 - beta_2^t), w -= lr·m̂ / (sqrt(v̂) + eps). Keras keeps the product Πu in one
variable; here it is recomputed from the step count kept in each parameter's state, so a
resumed run takes the same steps (torch.optim.NAdam's schedule and epsilon differ)."""
from __future__ import annotations

import math

from cnnkit.train.optimizers.base import Optimizer, register


def momentum_schedule(beta_1: float, t: float) -> float:
    return beta_1 * (1.0 - 0.5 * 0.96 ** t)


@register
class Nadam(Optimizer):
    name = "nadam"
    options = ("beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **common):
        super().__init__(learning_rate, **common)
        self.moments(beta_1, beta_2, epsilon)

    def slots(self, group):
        return {"momentum": 0.0, "velocity": 0.0}

    def update(self, group, params, grads, states):
        import torch

        beta_1, beta_2 = group["beta_1"], group["beta_2"]
        t = int(float(states[0]["step"]))
        u_t, u_next = momentum_schedule(beta_1, t), momentum_schedule(beta_1, t + 1)
        product = math.prod(momentum_schedule(beta_1, i) for i in range(1, t + 1))
        momenta, velocities = [s["momentum"] for s in states], [s["velocity"] for s in states]
        torch._foreach_lerp_(momenta, grads, 1 - beta_1)
        torch._foreach_mul_(velocities, beta_2)
        torch._foreach_addcmul_(velocities, grads, grads, value=1 - beta_2)
        m_hat = torch._foreach_mul(momenta, u_next / (1 - product * u_next))
        torch._foreach_add_(m_hat, grads, alpha=(1 - u_t) / (1 - product))
        denominators = torch._foreach_div(velocities, 1 - beta_2 ** t)
        torch._foreach_sqrt_(denominators)
        torch._foreach_add_(denominators, group["epsilon"])
        torch._foreach_addcdiv_(params, m_hat, denominators, value=-group["lr"])
