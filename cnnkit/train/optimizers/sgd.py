"""SGD, Keras 3's rule: velocity v = momentum·v - lr·g, then w += v (Nesterov: w += momentum·v
- lr·g). At a constant rate this is torch.optim.SGD's step; when a schedule changes the rate,
the rate of each past step stays inside the velocity, as in Keras."""
from __future__ import annotations

from cnnkit.errors import CnnkitError
from cnnkit.train.optimizers.base import Optimizer, flag, number, register


@register
class SGD(Optimizer):
    name = "sgd"
    options = ("momentum", "nesterov")

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **common):
        super().__init__(learning_rate, **common)
        self.momentum = number("momentum", momentum, 0.0, 1.0, strict=False)
        self.nesterov = flag("nesterov", nesterov)
        if self.nesterov and not self.momentum:
            raise CnnkitError("nesterov needs optimizer 'sgd' with momentum > 0")

    def slots(self, group):
        return {"velocity": 0.0} if group["momentum"] else {}

    def update(self, group, params, grads, states):
        import torch

        lr, momentum = group["lr"], group["momentum"]
        if not momentum:
            torch._foreach_add_(params, grads, alpha=-lr)
            return
        velocities = [s["velocity"] for s in states]
        torch._foreach_mul_(velocities, momentum)
        torch._foreach_add_(velocities, grads, alpha=-lr)
        if group["nesterov"]:
            torch._foreach_add_(params, grads, alpha=-lr)
            torch._foreach_add_(params, velocities, alpha=momentum)
        else:
            torch._foreach_add_(params, velocities)

    def upgrade(self, state, group):
        import torch

        state.setdefault("step", torch.zeros((), dtype=torch.float32))  # torch's SGD kept none
        # earlier versions kept torch.optim's buffer b, with w -= lr·b: the velocity is -lr·b
        if "momentum_buffer" in state:
            state["velocity"] = state.pop("momentum_buffer").mul(-group["lr"])
