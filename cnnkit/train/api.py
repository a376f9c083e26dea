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
    trainer = Trainer(model, TrainConfig.from_dict(settings), list(callbacks))
    model.trainer = trainer
    return trainer.fit(x, y, xv, yv)


def evaluate(model, x, y, batch_size: int = 1000) -> dict:
    """{'loss', 'accuracy'} with the compiled loss (sparse categorical cross-entropy by default)."""
    from cnnkit.train.config import TrainConfig
    from cnnkit.train.trainer import Trainer

    trainer = getattr(model, "trainer", None)
    if trainer is None:
        settings = {**(model.compiled or {}), "verbose": 0, "eval_batch_size": batch_size}
        trainer = Trainer(model, TrainConfig.from_dict(settings))
    return trainer.evaluate(_pixels(model, x, "x"), as_labels(y))
