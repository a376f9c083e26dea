"""Your own `torch.nn.Module`, trained by cnnkit's engine: any module mapping float NCHW
batches (B, C, H, W) in [0, 1] to logits (B, K), as seed 003's `CNN` class does.

    model = cnnkit.fit(CNN(), "fashion-mnist", epochs=15, batch_size=100, lr=1e-3, seed=777)
    model.evaluate(x_test, y_test)      # {'loss', 'accuracy'}
    model.predict(images)               # class probabilities, any image form cnnkit takes

A module cnnkit did not build gets contiguous NCHW batches (code such as
`out.view(out.size(0), -1)` works as in a hand-written loop); channels_last is only for the
networks cnnkit builds. Callbacks, `seed=` (shuffle order and dropout) and resumable training
states work as for cnnkit's own models; `torch.manual_seed(777)` before building the module
fixes its initial weights, as in the seed.

With `out=` the training is a cnnkit run (`cnnkit.run`, through cnnkit.runs.fit) and leaves a
run directory:

    model = cnnkit.fit(CNN(), "digits", epochs=5, out="runs/cnn")   # config.json, history.csv,
    #                      metrics.json, best/ last/ (weights), curves and confusion matrix
    cnnkit.fit(CNN(), "digits", epochs=8, out="runs/cnn", resume=True)   # 3 epochs more
    model = cnnkit.load("runs/cnn/best", module=CNN())                   # evaluate, predict

What a run records of a module, and why loading asks for an instance again: cnnkit.model.module.
"""
from __future__ import annotations

import numpy as np

from cnnkit.errors import CnnkitError
from cnnkit.model.module import ModuleModel, as_model  # noqa: F401  (as_model: here as before)


def fit(model, data=None, y=None, **kwargs):
    """Train a cnnkit Sequential or your own nn.Module; returns the model (a ModuleModel for a
    module: `.evaluate`, `.predict`, `.history`, `.module` your module, trained in place).

    `data`: a dataset name ("fashion-mnist", "digits", ...), a cnnkit Dataset, or images with
    labels `y`. Keywords: fit's (epochs, batch_size, validation_split, validation_data,
    callbacks, seed, verbose) and any TrainConfig option (optimizer, lr, loss, ...).

    `optimizer` may also be your own torch.optim object over the module's parameters, and
    `scheduler` your torch.optim.lr_scheduler object over it: cnnkit steps them as a plain
    PyTorch loop does (zero_grad, backward, `optimizer.step()` per batch; `scheduler.step()`
    once per epoch, after its last batch, as torch's tutorials do; `scheduler_step="batch"`
    steps it after every batch instead, for OneCycleLR and the like). See cnnkit.train.own.

    In memory; `cnnkit.fit` (cnnkit.runs.fit) is this with `out=`, a run writing its
    directory, on top."""
    from cnnkit.data.base import Dataset
    from cnnkit.train.api import fit as fit_model

    # out=None, resume=False: in memory, as without them; a run is the runs stage's
    if kwargs.pop("out", None) is not None or kwargs.pop("resume", False):
        raise CnnkitError("fit(..., out=...) writes a run directory: call cnnkit.fit "
                          "(cnnkit.runs.fit), which takes out= and resume=")
    model = as_model(model)
    if isinstance(data, str):
        from cnnkit.data import load_dataset

        data = load_dataset(data)
    if isinstance(model, ModuleModel) and model.input_shape is None:
        x = data.x_train if isinstance(data, Dataset) else data
        if x is None:
            raise CnnkitError("fit needs data: fit(module, 'fashion-mnist') or fit(module, x, y)")
        shape = tuple(int(s) for s in (x.shape if hasattr(x, "shape") else np.shape(x)))
        if len(shape) not in (3, 4):
            raise CnnkitError(f"images of shape {shape}; valid: (N, H, W) or (N, H, W, C)")
        model.input_shape = shape[1:] if len(shape) == 4 else shape[1:] + (1,)
    model.history = fit_model(model, data, y, **kwargs)
    return model
