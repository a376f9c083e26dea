"""Fine-tuning phases on the one trainer (Chollet's chapter, keras.io's transfer-learning guide):

    phase "head"       epochs [0, head_epochs): the backbone frozen, the new head trains
    phase "fine-tune"  the epochs after: the blocks `unfreeze` names train too, at the
                       learning rate times `lr_factor` (the head's rate / 10 by default)

`FreezeSchedule` is a callback: at each epoch's start it sets the backbone's layers'
`trainable` flags and the schedule's phase factor from the epoch alone, so a run resumed in
either phase continues exactly as the uninterrupted one. The optimizer is built once over
every parameter that trains in some phase (`prepare`, before the Trainer): a frozen one has no
gradient, so the optimizer leaves it (and its state) untouched. The backbone's batch norm is in
inference mode throughout (the model calls it with training=False; cnnkit.model.applications
.finetune), so its moving statistics never change.
"""
from __future__ import annotations

from cnnkit.model.applications.blocks import blocks
from cnnkit.train.hooks import Callback
from cnnkit.train.optimizers import trained_parameters

HEAD, FINE_TUNE = "head", "fine-tune"


class FreezeSchedule(Callback):
    """`freeze=True`: the backbone stays frozen for the whole run (a feature extractor)."""

    def __init__(self, model, head_epochs: int, unfreeze: list[str], lr_factor: float,
                 freeze: bool = False):
        self.net_model = model  # the model trained (set_model gets the same one)
        self.blocks = blocks(model)  # {block: its layers}, input to output (one line if none)
        self.head_epochs, self.unfreeze, self.lr_factor = head_epochs, list(unfreeze), lr_factor
        self.freeze = freeze
        self.table = None  # describe()'s

    def phase(self, epoch: int) -> str:
        return HEAD if self.freeze or epoch < self.head_epochs else FINE_TUNE

    def trained_blocks(self, phase: str) -> list[str]:
        return [] if phase == HEAD else self.unfreeze

    def factor(self, phase: str) -> float:
        return self.lr_factor if phase == FINE_TUNE else 1.0

    def set_blocks(self, trained) -> None:
        """Make exactly the blocks `trained` trainable in the backbone (the head always is)."""
        trained = set(trained)
        for name, layers in self.blocks.items():
            for layer in layers:
                layer.trainable = name in trained
        trained_parameters(self.net_model)  # requires_grad from the flags

    def prepare(self) -> None:
        """Before the Trainer is built: every block that may train trainable, so that the
        optimizer holds its parameters (also when a resumed run is given more epochs)."""
        self.set_blocks(self.trained_blocks(HEAD if self.freeze else FINE_TUNE))

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        phase = self.phase(epoch)
        self.set_blocks(self.trained_blocks(phase))
        # the phase's rate factor (a user's own torch scheduler, cnnkit.train.own, has none)
        schedule = self.trainer.schedule if self.trainer is not None else None
        if schedule is not None and hasattr(schedule, "phase"):
            schedule.phase = self.factor(phase)
            schedule.apply()

    def describe(self, epochs: int, lr: float) -> list[dict]:
        """What was frozen when, per phase (config.json, metrics.json and the report; kept as
        `table`): its epochs (1-based, inclusive), the blocks trained and frozen, the
        parameters trainable and frozen (batch norm's moving statistics, never trained, are not
        counted), and the learning rate before any schedule. The flags are left as `prepare`
        sets them."""
        spans = [(HEAD, 0, min(self.head_epochs, epochs) if not self.freeze else epochs),
                 (FINE_TUNE, self.head_epochs, epochs)]
        out = []
        for phase, first, end in spans:
            if end <= first or (phase == FINE_TUNE and self.freeze):
                continue
            trained = self.trained_blocks(phase)
            self.set_blocks(trained)
            params = list(self.net_model.net.parameters())
            out.append({
                "phase": phase, "epochs": [first + 1, end],
                "trained_blocks": list(trained),
                "frozen_blocks": [b for b in self.blocks if b not in trained],
                "trainable_params": sum(p.numel() for p in params if p.requires_grad),
                "frozen_params": sum(p.numel() for p in params if not p.requires_grad),
                "lr": lr * self.factor(phase)})
        self.prepare()
        self.table = out
        return out


PHASE_COLUMNS = ["phase", "epochs", "trained blocks", "frozen blocks", "trainable params",
                 "frozen params", "lr"]


def phase_rows(phases: list[dict]) -> list[list[str]]:
    """`describe`'s phases as table rows under PHASE_COLUMNS (report.md and report.html)."""
    return [[p["phase"], _span(*p["epochs"]),
             _blocks_text(p["trained_blocks"], "none (the head only)"),
             _blocks_text(p["frozen_blocks"], "none"), f"{p['trainable_params']:,}",
             f"{p['frozen_params']:,}", f"{p['lr']:.3g}"] for p in phases]


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}–{last}"


def _blocks_text(names: list[str], empty: str) -> str:
    if not names:
        return empty
    if len(names) <= 4:
        return ", ".join(names)
    return f"{names[0]} … {names[-1]} ({len(names)} blocks)"


def phases_of(trainer) -> list[dict] | None:
    """The fine-tuning phases of the run `trainer` ran (`describe`'s table), or None."""
    return next((cb.table for cb in trainer.callbacks if isinstance(cb, FreezeSchedule)), None)
