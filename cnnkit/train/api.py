"""Keras-style `model.compile(...)` / `model.fit(...)` / `model.evaluate(...)` on a Sequential.

    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=20, batch_size=100, validation_split=0.2,
                        callbacks=[EarlyStopping(patience=2, restore_best_weights=True)])
"""
from __future__ import annotations

import numpy as np

from cnnkit.errors import CnnkitError


def _pixels(model, x, what: str):
    """uint8 (N, H, W, C) at the model's input by the input contract predict uses too
    (cnnkit.model.inputs); errors say which argument was wrong."""
    from cnnkit.model.inputs import to_pixels

    try:
        return to_pixels(x, model._require_input())[0]
    except CnnkitError as e:
        raise CnnkitError(f"{what}: {e}") from None


def as_labels(y):
    """Integer class ids; one-hot rows (Keras's to_categorical) are turned back into ids."""
    import torch

    t = torch.as_tensor(np.asarray(y))
    if t.dim() == 2:
        t = t.argmax(dim=1)
    return t.long()


def fit(model, x=None, y=None, *, epochs: int = 1, batch_size: int = 32,
        validation_split: float | None = None, validation_data=None, callbacks=(),
        verbose: int = 1, seed: int | None = None, **options):
    """Train in place; returns a History (`history.history['val_loss']`, ...).

    `x` may be a cnnkit Dataset (its training split is used) or images with labels `y`, in
    any form predict takes (cnnkit.model.inputs: uint8 or floats in [0, 1], any size, files)."""
    from cnnkit.data.base import Dataset
    from cnnkit.train.config import TrainConfig
    from cnnkit.train.trainer import Trainer

    if isinstance(x, Dataset):
        if model.class_names is None:
            model.class_names = list(x.class_names)
        x, y = x.x_train, x.y_train
    if x is None or y is None:
        raise CnnkitError("fit needs images and labels: fit(x, y, ...) or fit(dataset, ...)")
    model.check_classifier()
    own = own_objects(options)
    x, y = _pixels(model, x, "x"), as_labels(y)
    settings = {**(model.compiled or {}), **options, "epochs": epochs, "batch_size": batch_size,
                "verbose": verbose, "seed": seed}
    xv = yv = None
    if validation_data is not None:
        xv, yv = _pixels(model, validation_data[0], "validation x"), as_labels(validation_data[1])
    elif validation_split:
        from cnnkit.data.split import train_val_split

        tr, va = train_val_split(y, validation_split, seed=seed or 0)
        x, y, xv, yv = x[tr], y[tr], x[va], y[va]
    trainer = Trainer(model, TrainConfig.from_dict(settings), list(callbacks), **own)
    model.trainer = trainer
    return trainer.fit(x, y, xv, yv)


# TrainConfig's settings of an optimizer by name: an optimizer object holds its own
NAMED_OPTIMIZER_SETTINGS = ("lr", "momentum", "nesterov", "weight_decay", "optimizer_options")


def own_objects(options: dict) -> dict:
    """Take a PyTorch user's own optimizer and scheduler objects out of fit's `options`, as the
    Trainer's keywords (cnnkit.train.own); an optimizer by name stays a TrainConfig option."""
    own = {key: options.pop(key) for key in ("scheduler", "scheduler_step") if key in options}
    optimizer = options.get("optimizer")
    if optimizer is not None and not isinstance(optimizer, str) \
            and not hasattr(optimizer, "train_options"):  # not one of cnnkit's registry
        own["optimizer"] = options.pop("optimizer")
        for key in NAMED_OPTIMIZER_SETTINGS:
            if options.get(key) is not None:
                raise CnnkitError(f"{key}={options[key]!r} is a setting of an optimizer by "
                                  f"name; the {type(optimizer).__name__} object given holds "
                                  "its own: set it there")
    if own.get("scheduler") is None and "scheduler_step" in own:
        raise CnnkitError("scheduler_step= says when to step a scheduler object of yours: "
                          "give it, fit(..., optimizer=opt, scheduler=sched, scheduler_step=...)")
    if own.get("scheduler") is not None:
        if "optimizer" not in own:
            raise CnnkitError("scheduler= steps an optimizer object of yours: give that "
                              "optimizer too, fit(..., optimizer=opt, scheduler=sched)")
        if options.get("schedule", "constant") != "constant":
            raise CnnkitError(f"schedule={options['schedule']!r} and scheduler= both set the "
                              "learning rate; give one")
    return own


def evaluate(model, x, y, batch_size: int = 1000) -> dict:
    """{'loss', 'accuracy'} with the compiled loss (sparse categorical cross-entropy by default)."""
    from cnnkit.train.config import TrainConfig
    from cnnkit.train.trainer import Trainer

    trainer = getattr(model, "trainer", None)
    if trainer is None:
        settings = {**(model.compiled or {}), "verbose": 0, "eval_batch_size": batch_size}
        trainer = Trainer(model, TrainConfig.from_dict(settings))
    return trainer.evaluate(_pixels(model, x, "x"), as_labels(y))
