"""Optimizers and learning-rate schedules by name, with Keras's defaults.

Keras users expect `optimizer="adam"` to mean Keras's Adam (lr 0.001, epsilon 1e-7) and
`"rmsprop"` Keras's RMSprop (rho 0.9), so the defaults here follow Keras, not PyTorch.

The optimizers are cnnkit.train.optimizers: torch.optim's update rules and kernels, chosen by
measurement on a 2-core CPU (seed003-cnn, 50k parameters; microseconds per step): Adam fused
1,800 vs foreach 5,800; AdamW fused 1,100 vs foreach 1,900; SGD plain 100 vs fused 720; Adagrad
fused 3,100 vs plain 3,800; RMSprop (no fused kernel in torch) 3,000 foreach vs 7,300 plain.

Schedules are one small class stepped once per batch: the learning rate is
`base_lr * multiplier(step) * scale`, where `scale` is what ReduceLROnPlateau lowers. Its whole
state is two numbers, so resuming a run restores it exactly (no pickled closures).
"""
from __future__ import annotations

import math

import torch

from cnnkit.errors import CnnkitError, one_of
from cnnkit.train.config import OPTIMIZERS, SCHEDULES

DEFAULT_LR = {"sgd": 0.01, "adagrad": 0.001, "rmsprop": 0.001, "adam": 0.001, "adamw": 0.001}
DEFAULT_WEIGHT_DECAY = {"adamw": 0.004}  # Keras AdamW's default; the others default to none


def make_optimizer(name: str, params, lr: float | None = None, momentum: float = 0.0,
                   nesterov: bool = False, weight_decay: float | None = None
                   ):
    """A torch optimizer by Keras name; `lr=None` and `weight_decay=None` take Keras defaults."""
    if name not in OPTIMIZERS:
        raise one_of("optimizer", name, OPTIMIZERS)
    lr = DEFAULT_LR[name] if lr is None else float(lr)
    wd = DEFAULT_WEIGHT_DECAY.get(name, 0.0) if weight_decay is None else float(weight_decay)
    if not lr > 0 or not math.isfinite(lr):
        raise CnnkitError(f"learning rate {lr} is out of range; valid: a number > 0")
    if not 0.0 <= momentum < 1.0:
        raise CnnkitError(f"momentum={momentum} is out of range; valid: 0 <= momentum < 1")
    if momentum and name not in ("sgd", "rmsprop"):
        raise CnnkitError(f"momentum applies to sgd and rmsprop, not {name}")
    if nesterov and (name != "sgd" or momentum == 0):
        raise CnnkitError("nesterov needs optimizer 'sgd' with momentum > 0")
    if not wd >= 0:
        raise CnnkitError(f"weight_decay={wd} is out of range; valid: a number >= 0")
    params = [p for p in params if p.requires_grad]
    if not params:
        raise CnnkitError("the model has no trainable parameters (are all layers frozen?)")
    from cnnkit.train import optimizers as opt  # torch.optim's rules, without its import cost

    if name == "sgd":
        return opt.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    if name == "adagrad":  # Keras: initial accumulator 0.1, epsilon 1e-7
        return opt.Adagrad(params, lr=lr, initial_accumulator_value=0.1, eps=1e-7,
                           weight_decay=wd)
    if name == "rmsprop":  # Keras: rho 0.9, epsilon 1e-7 inside the square root (its rule)
        return opt.RMSprop(params, lr=lr, alpha=0.9, eps=1e-7, momentum=momentum,
                           weight_decay=wd, keras_rule=True)
    cls = opt.AdamW if name == "adamw" else opt.Adam
    return cls(params, lr=lr, betas=(0.9, 0.999), eps=1e-7, weight_decay=wd)


class Schedule:
    """Per-batch learning rate: `base_lr * multiplier(step) * scale` for every param group."""

    def __init__(self, name: str, optimizer, multiplier):
        self.name = name
        self.optimizer = optimizer
        self.multiplier = multiplier
        self.base_lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
        for g, base in zip(optimizer.param_groups, self.base_lrs):
            g["initial_lr"] = base
        self.steps = 0  # batches done
        self.scale = 1.0  # lowered by ReduceLROnPlateau
        self.apply()

    def apply(self) -> None:
        """Set every group's rate for the current step (after changing `scale`)."""
        m = self.multiplier(self.steps) * self.scale
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * m

    def step(self) -> None:
        """Call after each optimizer step: sets the rate for the next batch."""
        self.steps += 1
        self.apply()

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict:
        return {"name": self.name, "steps": self.steps, "scale": self.scale,
                "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.scale = int(state["steps"]), float(state["scale"])
        self.base_lrs = [float(b) for b in state["base_lrs"]]
        self.apply()


def _cosine(t: float) -> float:
    """1 at t=0 down to 0 at t=1, half a cosine wave."""
    return 0.5 * (1.0 + math.cos(math.pi * min(max(t, 0.0), 1.0)))


def make_schedule(name: str, optimizer, epochs: int, steps_per_epoch: int,
                  step_size: int = 10, gamma: float = 0.1, min_lr_factor: float = 0.0,
                  pct_start: float = 0.25, div_factor: float = 25.0,
                  final_div_factor: float = 1e4) -> Schedule:
    """A schedule stepped per batch.

    constant: the optimizer's lr throughout. step: times `gamma` every `step_size` epochs.
    cosine: from lr down to `lr * min_lr_factor` over the whole run (Keras CosineDecay).
    onecycle: warm up from `lr / div_factor` to lr over `pct_start` of the run, then anneal to
    `lr / (div_factor * final_div_factor)` (PyTorch's OneCycleLR; lr is the peak)."""
    if name not in SCHEDULES:
        raise one_of("schedule", name, SCHEDULES)
    if step_size < 1:
        raise CnnkitError(f"step_size={step_size} is out of range; valid: an integer >= 1")
    if not 0 < gamma <= 1:
        raise CnnkitError(f"gamma={gamma} is out of range; valid: 0 < gamma <= 1")
    if not 0 < pct_start < 1:
        raise CnnkitError(f"pct_start={pct_start} is out of range; valid: 0 < pct_start < 1")
    total = max(int(epochs) * int(steps_per_epoch), 1)
    spe = max(int(steps_per_epoch), 1)
    if name == "constant":
        def multiplier(step):
            return 1.0
    elif name == "step":
        def multiplier(step):
            return gamma ** ((step // spe) // step_size)
    elif name == "cosine":
        def multiplier(step):
            return min_lr_factor + (1.0 - min_lr_factor) * _cosine(step / total)
    else:
        warm = max(int(pct_start * total), 1)
        start, end = 1.0 / div_factor, 1.0 / (div_factor * final_div_factor)

        def multiplier(step):
            if step < warm:
                return start + (1.0 - start) * (1.0 - _cosine(step / warm))
            return end + (1.0 - end) * _cosine((step - warm) / max(total - warm, 1))
    return Schedule(name, optimizer, multiplier)
