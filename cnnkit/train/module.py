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
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cnnkit.errors import CnnkitError


def standard_layout(x: torch.Tensor) -> torch.Tensor:
    """`x` with NCHW's own strides. `contiguous()` is not enough: a one-channel channels_last
    batch already counts as contiguous, yet convolutions read its strides as channels_last and
    hand channels_last outputs to code that then calls `.view`."""
    expected, step = [], 1
    for size in reversed(x.shape):
        expected.insert(0, step)
        step *= size
    return x if list(x.stride()) == expected else x.clone(memory_format=torch.contiguous_format)


class ForeignNet(nn.Module):
    """The model contract around a user's module: logits out, no split-off activation."""

    output_activation = None
    flip_average = False

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        self.output_shape = None  # (K,), known after the first batch

    def forward(self, x):  # (B, C, H, W)
        logits = self.module(standard_layout(x))
        if self.output_shape is None:
            self.output_shape = tuple(logits.shape[1:])
        return logits

    def outputs(self, logits):
        return logits

    def probabilities(self, logits):
        from cnnkit.model.outputs import probabilities

        return probabilities(logits, None)


class ModuleModel:
    """What cnnkit's Trainer, evaluate and predict need from a model, for a plain module."""

    foreign = True
    compiled = None  # no Keras-style compile(): options go to fit

    def __init__(self, module: nn.Module, input_shape=None, class_names=None, name=None):
        if not isinstance(module, nn.Module):
            raise CnnkitError(f"not a torch.nn.Module: {type(module).__name__}")
        self.module = module
        self.net = ForeignNet(module)
        self.name = name or type(module).__name__
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self.class_names = list(class_names) if class_names else None
        self.preprocessing = {"normalize": "unit"}
        self.dataset = None
        self.trainer = None

    def _require_input(self):
        if self.input_shape is None:
            raise CnnkitError(f"{self.name} has not seen data yet: its input shape is unknown "
                              "(fit it first, or pass input_shape=(H, W, C))")
        return self.input_shape

    def check_classifier(self):
        pass

    def predict(self, x, batch_size: int = 1000):
        """Class probabilities (N, K), or (K,) for one image (cnnkit.model.predict)."""
        from cnnkit.model.predict import predict_proba

        if self.net.output_shape is None:
            with torch.inference_mode():
                self.net.eval()
                self.net(torch.zeros((1, self._require_input()[2], *self.input_shape[:2])))
        return predict_proba(self, x, batch_size=batch_size)

    def evaluate(self, x, y, batch_size: int = 1000) -> dict:
        from cnnkit.train.api import evaluate

        return evaluate(self, x, y, batch_size=batch_size)

    def save(self, path):
        """The module's weights as `weights.safetensors` in a directory (its class is your
        code: rebuild it, then `module.load_state_dict(safetensors.torch.load_file(...))`)."""
        from safetensors.torch import save_file

        from cnnkit.fsutil import atomic_dir

        with atomic_dir(path) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()},
                      str(tmp / "weights.safetensors"))

    def __repr__(self):
        return f"ModuleModel({self.name}, input_shape={self.input_shape})"


def as_model(model):
    """A cnnkit model as it is; a plain nn.Module wrapped in a ModuleModel."""
    if isinstance(model, nn.Module) and not hasattr(model, "layer_infos"):
        return ModuleModel(model)
    return model


def fit(model, data=None, y=None, **kwargs):
    """Train a cnnkit Sequential or your own nn.Module; returns the model (a ModuleModel for a
    module: `.evaluate`, `.predict`, `.history`, `.module` your module, trained in place).

    `data`: a dataset name ("fashion-mnist", "digits", ...), a cnnkit Dataset, or images with
    labels `y`. Keywords: fit's (epochs, batch_size, validation_split, validation_data,
    callbacks, seed, verbose) and any TrainConfig option (optimizer, lr, loss, ...)."""
    from cnnkit.data.base import Dataset
    from cnnkit.train.api import fit as fit_model

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
