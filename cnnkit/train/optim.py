"""Optimizers and learning-rate schedules by name.

Optimizers come from the one registry, cnnkit.train.optimizers: a name there ("adam") is the
same class, with Keras's defaults and Keras's update rule, in `cnnkit train`, RunSpec,
`Sequential.compile` and `cnnkit.keras`.

Schedules are the registry SCHEDULES below, one small class stepped once per batch: the
learning rate is `base_lr * multiplier(step) * scale * phase`, where `scale` is what
ReduceLROnPlateau lowers and `phase` a fine-tuning phase's factor (set from the epoch at each
epoch start: cnnkit.train.phases). Its whole state is two numbers, so resuming a run restores it exactly (no pickled
closures). Nothing here imports torch: cnnkit.train.config reads the names for the CLI.
"""
from __future__ import annotations

import math

from cnnkit.errors import CnnkitError, one_of
from cnnkit.train.optimizers import create


def make_optimizer(name: str, params, lr: float | None = None, momentum: float = 0.0,
                   nesterov: bool = False, weight_decay: float | None = None,
                   options: dict | None = None):
    """The steppable optimizer `name` over the trainable `params`: TrainConfig's fields
    (`lr=None`, `weight_decay=None`: the optimizer's defaults) and any other Keras argument of
    that optimizer in `options` (`{"beta_2": 0.99, "amsgrad": True}`)."""
    spec = create(name, learning_rate=lr, momentum=momentum or None, nesterov=nesterov or None,
                  weight_decay=weight_decay, **(options or {}))
    params = [p for p in params if p.requires_grad]
    if not params:
        raise CnnkitError("the model has no trainable parameters (are all layers frozen?)")
    return spec.build(params)


class Schedule:
    """Per-batch learning rate: `base_lr * multiplier(step) * scale * phase` for every param
    group."""

    def __init__(self, name: str, optimizer, multiplier):
        self.name = name
        self.optimizer = optimizer
        self.multiplier = multiplier
        self.base_lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
        for g, base in zip(optimizer.param_groups, self.base_lrs):
            g["initial_lr"] = base
        self.steps = 0  # batches done
        self.scale = 1.0  # lowered by ReduceLROnPlateau
        # the current fine-tuning phase's factor (cnnkit.train.phases), set at each epoch
        # start from the epoch alone: not part of the state
        self.phase = 1.0
        self.apply()

    def apply(self) -> None:
        """Set every group's rate for the current step (after changing `scale` or `phase`)."""
        m = self.multiplier(self.steps) * self.scale * self.phase
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


def _constant(k: dict):
    return lambda step: 1.0


def _step(k: dict):
    """Times `gamma` every `step_size` epochs."""
    return lambda step: k["gamma"] ** ((step // k["spe"]) // k["step_size"])


def _cosine_decay(k: dict):
    """From lr down to `lr * min_lr_factor` over the whole run (Keras CosineDecay)."""
    low = k["min_lr_factor"]
    return lambda step: low + (1.0 - low) * _cosine(step / k["total"])


def _onecycle(k: dict):
    """Warm up from `lr / div_factor` to lr over `pct_start` of the run, then anneal to
    `lr / (div_factor * final_div_factor)` (PyTorch's OneCycleLR; lr is the peak)."""
    total = k["total"]
    warm = max(int(k["pct_start"] * total), 1)
    start = 1.0 / k["div_factor"]
    end = start / k["final_div_factor"]

    def multiplier(step):
        if step < warm:
            return start + (1.0 - start) * (1.0 - _cosine(step / warm))
        return end + (1.0 - end) * _cosine((step - warm) / max(total - warm, 1))
    return multiplier


# The schedule registry: name -> builder of `multiplier(step)` from the run's settings.
SCHEDULES = {"constant": _constant, "step": _step, "cosine": _cosine_decay, "onecycle": _onecycle}


def make_schedule(name: str, optimizer, epochs: int, steps_per_epoch: int,
                  step_size: int = 10, gamma: float = 0.1, min_lr_factor: float = 0.0,
                  pct_start: float = 0.25, div_factor: float = 25.0,
                  final_div_factor: float = 1e4) -> Schedule:
    """A schedule from SCHEDULES, stepped per batch (step_size and gamma as TrainConfig
    checked them)."""
    if name not in SCHEDULES:
        raise one_of("schedule", name, SCHEDULES)
    settings = dict(total=max(int(epochs) * int(steps_per_epoch), 1),
                    spe=max(int(steps_per_epoch), 1), step_size=step_size, gamma=gamma,
                    min_lr_factor=min_lr_factor, pct_start=pct_start, div_factor=div_factor,
                    final_div_factor=final_div_factor)
    return Schedule(name, optimizer, SCHEDULES[name](settings))
