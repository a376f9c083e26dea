"""The model contract: what every cnnkit model gives, whatever made it.

Three kinds implement it: `Sequential` (cnnkit's description, from Python, a model file, a
preset or a saved directory), a Keras file's model (a Sequential read by model.keras_files) and
your own `torch.nn.Module` (model.module.ModuleModel). The resolver (model.resolve) returns one,
and every user of a model (train, evaluate, predict, the report, serve, ONNX export) reads it
through these names only."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from cnnkit.errors import CnnkitError


@runtime_checkable
class Model(Protocol):
    net: object               # the built torch network: logits (B, units) from (B, C, H, W)
    input_shape: tuple        # (H, W, C), Keras's order
    output_shape: tuple       # (units,)
    class_names: list | None  # one per class, or None
    preprocessing: dict       # {"normalize": "unit"} or standardize with mean and std
    output_activation: str | None  # 'softmax', 'sigmoid' or None (plain logits)
    dataset: str | None       # what it was trained on, for `cnnkit evaluate`

    def save(self, path) -> None:
        """Write it where `cnnkit.load(path)` rebuilds it."""

    def summary(self, explain: bool = False, print_fn=None) -> None:
        """Print its layers (or what is known of a module's), shapes and parameters."""

    def summary_dict(self) -> dict:
        """What a run's config.json records of it."""

    def predict(self, x, batch_size: int = 256):
        """Class probabilities (N, K), or (K,) for one image (the output contract)."""

    def check_classifier(self) -> None:
        """A CnnkitError unless its output is a classifier's (logits, one per class)."""


NAMES = ("net", "input_shape", "output_shape", "class_names", "preprocessing",
         "output_activation", "dataset", "save", "summary", "summary_dict", "predict",
         "check_classifier")


def check_model(model) -> None:
    """A CnnkitError naming the first part of the contract `model` lacks."""
    for name in NAMES:
        if not hasattr(model, name):
            raise CnnkitError(f"not a cnnkit model: {type(model).__name__} lacks {name}; valid: "
                              "a Sequential, a model cnnkit.load gives, or your own nn.Module "
                              "(cnnkit.fit wraps it)")
