"""`cnnkit lr-find` and `--lr find`: the learning-rate finder run with a run's own options.

    found = find_lr(RunSpec(model="seed003-cnn", dataset="digits"), plot="lr_find.png")
    found["suggested"]   # the rate to train with

The finder trains a copy of the run's model, built as the run builds it, on the run's own
training split, through the one trainer with an LRRamp callback (cnnkit.train.lr_find), for at
most 100 steps; nothing is kept of it but the curve: the model, the random state and the run
directory are left as they were (the copy is thrown away, the random state forked), so a run
with `--lr find` trains from the same initial weights, in the same order, as with `--lr X`.
"""
from __future__ import annotations

import math

from cnnkit.errors import CnnkitError
from cnnkit.train.lr_find import MAX_STEPS, LRRamp, smoothed, suggest


def find_lr(spec, plot=None, module=None, steps: int = MAX_STEPS) -> dict:
    """{"suggested", "lrs", "losses" (each step's own), "steps", "plot"} for the run `spec`
    describes; `plot`: the PNG to draw (None: none)."""
    import torch

    from cnnkit.runs.prepare import build_model, load_splits
    from cnnkit.train.trainer import Trainer

    spec = spec.resolved()
    config = spec.train_config()
    with torch.random.fork_rng(devices=[]):
        ds, splits = load_splits(spec, module)
        torch.manual_seed(config.seed)
        model, _ = build_model(spec, ds, module)
        x, y = splits["train"]
        per_epoch = max(1, math.ceil(len(x) / config.batch_size))
        config.epochs = math.ceil(steps / per_epoch)  # small sets: the ramp spans epochs
        config.verbose, config.dry_run = 0, False
        ramp = LRRamp(steps)
        trainer = Trainer(model, config, [ramp])
        trainer.fit(x, y)
    if len(ramp.losses) < 3:
        raise CnnkitError(f"the learning-rate finder's loss was nan from its first steps "
                          f"({len(ramp.losses)} finite); check the data and the model")
    lrs = ramp.lrs[:len(ramp.losses)]
    suggested = suggest(lrs, ramp.losses)
    out = {"suggested": suggested, "lrs": lrs, "losses": ramp.losses,
           "steps": len(ramp.losses), "plot": None}
    if plot is not None:
        from cnnkit.look.plots import plot_lr_find

        out["plot"] = str(plot_lr_find(lrs, smoothed(ramp.losses), suggested, plot))
    return out
