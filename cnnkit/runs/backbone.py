"""`cnnkit train --backbone`: a RunSpec's fine-tuning options, checked and resolved, the model
they build (cnnkit.model.applications.finetune) and its freeze schedule (cnnkit.train.phases).

    backbone            mobilenetv2 (mobilenetv2-0.35 ... -1.4), resnet50, vgg16, efficientnetb0
    weights             imagenet (default), none, or a weights file
    head_epochs         epochs training the head only, the backbone frozen (default 0)
    unfreeze            after those: the top N blocks, 'all' (default) or block names
    finetune_lr_factor  the learning rate after head_epochs, times this (default 0.1 after a
                        head phase, 1 without one)
    freeze              the backbone frozen for the whole run (a feature extractor)

The checks here need no torch; the block names are checked where the model is built, before
the run directory holds anything.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from cnnkit.errors import CnnkitError, out_of_range, shown

FIELDS = ("weights", "head_epochs", "unfreeze", "finetune_lr_factor")
WEIGHTS = ("imagenet", "none")


def resolve_backbone_fields(d: dict) -> None:
    """Fill a backbone run's unset options (a dict of RunSpec's fields) with the defaults."""
    if d["weights"] is None:
        d["weights"] = "imagenet"
    if isinstance(d["unfreeze"], str) and d["unfreeze"].strip().isdecimal():
        d["unfreeze"] = int(d["unfreeze"])  # `--unfreeze 3`: the top 3 blocks
    if d["freeze"]:
        return  # no phases: the backbone stays frozen (check_backbone_fields refuses them)
    if d["head_epochs"] is None:
        d["head_epochs"] = 0
    if d["unfreeze"] is None:
        d["unfreeze"] = "all"
    if d["finetune_lr_factor"] is None:
        d["finetune_lr_factor"] = 0.1 if d["head_epochs"] else 1.0


def check_backbone_fields(spec) -> None:
    """One line for the first bad fine-tuning option of a resolved RunSpec."""
    if spec.backbone is None:
        given = next((f for f in FIELDS if getattr(spec, f) is not None), None)
        if given:
            raise CnnkitError(f"{given}={shown(getattr(spec, given))} needs backbone (the "
                              "pretrained network to fine-tune)", option=given,
                              value=getattr(spec, given))
        return
    from cnnkit.model.applications.finetune import check_backbone

    check_backbone(spec.backbone)
    for other in ("model", "init_from"):
        if getattr(spec, other) is not None:
            raise CnnkitError(f"{other}={shown(getattr(spec, other))} and a backbone "
                              f"({spec.backbone}) are both given; valid: one of them (a backbone "
                              "comes with a new head of its own)", option=other,
                              value=getattr(spec, other))
    w = spec.weights
    if w not in WEIGHTS and not _is_file(w):
        raise CnnkitError(f"weights={shown(w)} is not a file; valid: imagenet (Keras's "
                          "published ImageNet weights), none (random initialization), or the "
                          "path of a weights file", option="weights", value=w)
    if spec.freeze:
        given = next((f for f in FIELDS[1:] if getattr(spec, f) is not None), None)
        if given:
            raise CnnkitError(f"{given}={shown(getattr(spec, given))} and freeze are both "
                              "given, but with freeze the backbone stays frozen all run; valid: "
                              "one of them", option=given,
                              value=getattr(spec, given))
        return
    n = spec.head_epochs
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise out_of_range("head_epochs", n, "an integer >= 0 (0: no head-only phase)")
    u = spec.unfreeze
    if not (isinstance(u, (int, str)) and not isinstance(u, bool) or isinstance(u, list)):
        raise out_of_range("unfreeze", u, "an integer (the top N blocks), 'all', or block names")
    f = spec.finetune_lr_factor
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) or f <= 0:
        raise out_of_range("finetune_lr_factor", f, "a number > 0")


def _is_file(path) -> bool:
    try:
        return isinstance(path, (str, os.PathLike)) and Path(path).is_file()
    except (OSError, ValueError):  # a name too long, or with a NUL in it
        return False


def backbone_model(spec, ds):
    """The backbone with a new head for `ds`'s classes, at the data's image size."""
    from cnnkit.model.applications.finetune import finetune_model

    return finetune_model(spec.backbone, spec.weights, ds.image_shape, ds.num_classes)


def freeze_schedule(spec, model, parallel=None):
    """The run's FreezeSchedule (its blocks checked; None without a backbone), every block that
    may train made trainable so that the Trainer built next holds their parameters (what trains
    when: cnnkit.train.phases). `parallel`: a rank of a
    data-parallel run, which trains one set of parameters throughout (DDP's gradient hooks are
    set once)."""
    from cnnkit.model.applications.blocks import pick_blocks
    from cnnkit.train.phases import FreezeSchedule

    if spec.backbone is None:
        return None
    unfreeze = [] if spec.freeze else pick_blocks(model, spec.unfreeze)
    if parallel is not None and not spec.freeze and spec.head_epochs:
        raise CnnkitError(f"head_epochs={spec.head_epochs} changes what trains mid-run, which "
                          "runs in one process; valid: without nproc, or head_epochs=0",
                          option="head_epochs", value=spec.head_epochs)
    from cnnkit.train.optimizers import create

    schedule = FreezeSchedule(model, spec.head_epochs or 0, unfreeze,
                              spec.finetune_lr_factor or 1.0, freeze=bool(spec.freeze))
    lr = create(spec.optimizer, learning_rate=spec.lr).learning_rate  # None: the default
    schedule.describe(spec.epochs, lr)  # and prepare()
    return schedule
