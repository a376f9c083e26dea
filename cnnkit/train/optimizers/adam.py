"""Adam and AdamW, Keras 3's rule on torch's fused Adam kernel.

Keras folds both bias corrections into the rate and divides by sqrt(v) + eps; torch's kernel
adds eps to sqrt(v / (1 - beta_2^t)). They agree when the kernel's eps is eps / sqrt(1 -
beta_2^t), set at every step from the step count kept in the state (so a resumed run takes the
same steps). Weight decay is Keras's for every optimizer, apart from the gradient (here the
fused AdamW kernel applies it before the update, as Keras does), so `adam` with weight_decay is
AdamW's rule, and AdamW is Adam with Keras AdamW's default decay, 0.004."""
from __future__ import annotations

import math

from cnnkit.train.optimizers.base import Optimizer, flag, register


@register
class Adam(Optimizer):
    name = "adam"
    decays_itself = True  # the fused kernel decays the weights (one pass less)
    options = ("beta_1", "beta_2", "epsilon", "amsgrad")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, **common):
        super().__init__(learning_rate, **common)
        self.moments(beta_1, beta_2, epsilon)
        self.amsgrad = flag("amsgrad", amsgrad)

    def slots(self, group):
        names = ["exp_avg", "exp_avg_sq"] + ["max_exp_avg_sq"] * group["amsgrad"]
        return dict.fromkeys(names, 0.0)

    def update(self, group, params, grads, states):
        import torch

        beta_1, beta_2 = group["beta_1"], group["beta_2"]
        t = float(states[0]["step"])
        torch._fused_adamw_(  # its decay is Keras's: w *= 1 - lr·wd before the update
            params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
            [s["max_exp_avg_sq"] for s in states] if group["amsgrad"] else [],
            [s["step"] for s in states], lr=group["lr"], beta1=beta_1, beta2=beta_2,
            weight_decay=group["weight_decay"] or 0.0,
            eps=group["epsilon"] / math.sqrt(1 - beta_2 ** t),
            amsgrad=group["amsgrad"], maximize=False, grad_scale=None, found_inf=None)


@register
class AdamW(Adam):
    name = "adamw"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, **kwargs):
        super().__init__(learning_rate, weight_decay=weight_decay, **kwargs)
