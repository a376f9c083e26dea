"""A PyTorch user's own optimizer and scheduler objects, stepped by cnnkit's one loop exactly as
a plain PyTorch loop steps them:

    opt = torch.optim.Adadelta(net.parameters())
    model = cnnkit.fit(net, x, y, epochs=3, optimizer=opt,
                       scheduler=torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5))

Each batch: `opt.zero_grad()`, backward, `opt.step()`; the scheduler's `step()` after each
epoch's last batch, as torch's tutorials do (`scheduler_step="batch"`: after every batch, for
OneCycleLR and the like). The objects are trained in place; their `state_dict`s go in a
training state (BackupAndRestore) as the registry's optimizers' do."""
from __future__ import annotations

from cnnkit.errors import CnnkitError, one_of, shown

SCHEDULER_STEPS = ("epoch", "batch")


def own_optimizer(optimizer, params: list, model):
    """`optimizer` checked: a torch.optim.Optimizer over the model's trainable parameters."""
    import torch

    if not isinstance(optimizer, torch.optim.Optimizer):
        raise CnnkitError(f"optimizer={shown(optimizer)} is not understood; valid: a name "
                          "('adam', ...) or a torch.optim.Optimizer over the model's parameters")
    mine = {id(p) for p in model.net.parameters()}
    theirs = [p for g in optimizer.param_groups for p in g["params"]]
    foreign = sum(id(p) not in mine for p in theirs)
    if foreign:
        raise CnnkitError(f"the optimizer {type(optimizer).__name__} holds {foreign} of "
                          f"{len(theirs)} parameters that are not this model's: build it over "
                          "the module you train (optimizer(module.parameters()))")
    held = {id(p) for p in theirs}
    if not any(id(p) in held for p in params):  # a subset (fine-tuning the head) is fine
        raise CnnkitError(f"the optimizer {type(optimizer).__name__} holds none of the model's "
                          "trainable parameters")
    return optimizer


class OwnSchedule:
    """The trainer's schedule (stepped once per batch) over a user's torch scheduler: it steps
    the scheduler at each epoch's end (or each batch) and leaves the rates to it."""

    name = "own"

    def __init__(self, scheduler, optimizer, per: str, steps_per_epoch: int):
        if per not in SCHEDULER_STEPS:
            raise one_of("scheduler_step", per, SCHEDULER_STEPS)
        if getattr(scheduler, "optimizer", optimizer) is not optimizer:
            raise CnnkitError(f"the scheduler {type(scheduler).__name__} steps another optimizer "
                              "than the one given to fit: build it over that optimizer")
        self.scheduler, self.optimizer = scheduler, optimizer
        self.spe, self.per = max(int(steps_per_epoch), 1), per
        self.steps = 0  # batches done
        self.scale = self._applied = 1.0  # ReduceLROnPlateau lowers the rates through it

    def step(self) -> None:
        self.steps += 1
        if self.per == "batch" or self.steps % self.spe == 0:
            self.scheduler.step()

    def apply(self) -> None:
        """A change of `scale` (ReduceLROnPlateau), applied to the rates the scheduler set."""
        factor, self._applied = self.scale / self._applied, self.scale
        for group in self.optimizer.param_groups:
            group["lr"] *= factor

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict:
        return {"name": self.name, "steps": self.steps, "scale": self.scale,
                "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.scale = int(state["steps"]), float(state["scale"])
        self._applied = self.scale
        self.scheduler.load_state_dict(state["scheduler"])
