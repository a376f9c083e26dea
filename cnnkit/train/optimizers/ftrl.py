"""FTRL-proximal, Keras 3's rule (McMahan et al. 2013): with n the accumulated squared
gradients (from `initial_accumulator_value`) and p = -learning_rate_power,
    n' = n + g²,  z += g + 2·l2_shrinkage·w - (n'^p - n^p) / lr · w,
    w = (clip(z, ±l1) - z) / (n'^p / lr + 2·(l2 + beta / (2·lr))),  n = n'.
The weight is computed from z each step rather than moved by it, so l1 sets small weights to
exactly zero. torch.optim has no FTRL."""
from __future__ import annotations

from cnnkit.errors import out_of_range
from cnnkit.train.optimizers.base import Optimizer, number, register


@register
class Ftrl(Optimizer):
    name = "ftrl"
    options = ("learning_rate_power", "initial_accumulator_value", "l1_regularization_strength",
               "l2_regularization_strength", "l2_shrinkage_regularization_strength", "beta")

    def __init__(self, learning_rate=0.001, learning_rate_power=-0.5,
                 initial_accumulator_value=0.1, l1_regularization_strength=0.0,
                 l2_regularization_strength=0.0, l2_shrinkage_regularization_strength=0.0,
                 beta=0.0, **common):
        super().__init__(learning_rate, **common)
        power = learning_rate_power
        if isinstance(power, bool) or not isinstance(power, (int, float)) or not power <= 0:
            raise out_of_range("learning_rate_power", power, "a number <= 0")
        self.learning_rate_power = float(power)
        for key, value in (("initial_accumulator_value", initial_accumulator_value),
                           ("l1_regularization_strength", l1_regularization_strength),
                           ("l2_regularization_strength", l2_regularization_strength),
                           ("l2_shrinkage_regularization_strength",
                            l2_shrinkage_regularization_strength), ("beta", beta)):
            setattr(self, key, number(key, value, strict=False))

    def slots(self, group):
        return {"accumulator": group["initial_accumulator_value"], "linear": 0.0}

    def update(self, group, params, grads, states):
        import torch

        lr = group["lr"]
        # a 0-d tensor, as Keras's ops.power makes it: torch's pow by a Python 0.5 is sqrt,
        # which rounds differently, and FTRL's z amplifies the difference step by step
        power = torch.tensor(-group["learning_rate_power"], dtype=params[0].dtype)
        l1 = group["l1_regularization_strength"]
        l2 = group["l2_regularization_strength"] + group["beta"] / (2.0 * lr)
        shrink = group["l2_shrinkage_regularization_strength"]
        for w, g, s in zip(params, grads, states):
            n, z = s["accumulator"], s["linear"]
            n_new = n + g * g
            step_old, step_new = n.pow(power), n_new.pow(power)
            z.add_(g + 2 * shrink * w - (step_new - step_old) / lr * w)
            w.copy_((torch.clamp(z, -l1, l1) - z) / (step_new / lr + 2 * l2))
            n.copy_(n_new)
