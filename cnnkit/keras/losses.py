"""Keras's losses, by name, function or object: Keras's arguments (`from_logits`,
`label_smoothing`) and target forms over cnnkit's one loss math (cnnkit.train.losses).

Targets are as Keras takes them: class ids for the sparse loss, one-hot (or soft) rows for
categorical, 0/1 for binary, arrays of the output's shape for mse/mae. What the model's outputs
are follows Keras: a softmax or sigmoid layer's outputs, logits with `from_logits=True`, and the
outputs themselves (probabilities) for a last layer without activation.
"""
from __future__ import annotations

from cnnkit.errors import CnnkitError, one_of
from cnnkit.train import losses as core


class Loss:
    name = "loss"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, name=None,
                 reduction="sum_over_batch_size"):
        if reduction not in ("sum_over_batch_size", "auto"):
            raise CnnkitError(f"{type(self).__name__}: reduction={reduction!r} is not supported; "
                              "valid: 'sum_over_batch_size'")
        self.from_logits, self.label_smoothing = bool(from_logits), float(label_smoothing)
        self.name = name or self.name

    def activation(self, activation):
        """The core's reading of the outputs: None = logits, LINEAR = probabilities as given."""
        if self.from_logits:
            return None
        return activation if activation in ("softmax", "sigmoid") else core.LINEAR

    def __repr__(self):
        return f"{type(self).__name__}()"


class SparseCategoricalCrossentropy(Loss):
    name = "sparse_categorical_crossentropy"

    def compute(self, logits, activation, y, weights=None):
        y = y.reshape(-1).long()
        if y.numel() != logits.shape[0]:
            raise CnnkitError(f"{self.name} takes one class id per image; received labels of "
                              f"shape {tuple(y.shape)} for {logits.shape[0]} images (one-hot "
                              "labels go with categorical_crossentropy)")
        k = logits.shape[1]
        if int(y.min()) < 0 or int(y.max()) >= k:
            bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
            raise CnnkitError(f"label {bad} is out of range for a model with {k} outputs "
                              f"(valid: 0..{k - 1})")
        return core.sparse_categorical(logits, self.activation(activation), y, weights=weights)


class CategoricalCrossentropy(Loss):
    name = "categorical_crossentropy"

    def compute(self, logits, activation, y, weights=None):
        if y.shape != logits.shape:
            raise CnnkitError(f"{self.name} takes one-hot labels of shape (N, {logits.shape[1]}); "
                              f"received {tuple(y.shape)} (use to_categorical(y), or "
                              "sparse_categorical_crossentropy for class ids)")
        y = core.smooth(y.float(), self.label_smoothing, y.shape[1])
        return core.categorical(logits, self.activation(activation), y, weights)


class BinaryCrossentropy(Loss):
    name = "binary_crossentropy"

    def compute(self, logits, activation, y, weights=None):
        y = core.smooth(y.float().reshape(logits.shape), self.label_smoothing, 2)
        # from_logits: Keras reads each unit as a sigmoid's logit
        return core.binary(logits, "sigmoid" if self.from_logits else
                           self.activation(activation), y, weights)


class MeanSquaredError(Loss):
    name = "mean_squared_error"

    def compute(self, logits, activation, y, weights=None):
        return core.squared_error(logits, self.activation(activation),
                                  y.float().reshape(logits.shape), weights)


class MeanAbsoluteError(Loss):
    name = "mean_absolute_error"

    def compute(self, logits, activation, y, weights=None):
        return core.absolute_error(logits, self.activation(activation),
                                   y.float().reshape(logits.shape), weights)


BY_NAME = {"sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
           "categorical_crossentropy": CategoricalCrossentropy,
           "binary_crossentropy": BinaryCrossentropy,
           "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
           "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError}


def _function(name):
    def loss(y_true, y_pred):
        """Keras's loss function; pass it to compile(loss=...)."""
        raise CnnkitError(f"cnnkit.keras.losses.{name} is for compile(loss=...); it is not "
                          "called on arrays")
    loss.__name__ = name
    return loss


sparse_categorical_crossentropy = _function("sparse_categorical_crossentropy")
categorical_crossentropy = _function("categorical_crossentropy")
binary_crossentropy = _function("binary_crossentropy")
mean_squared_error = mse = _function("mean_squared_error")
mean_absolute_error = mae = _function("mean_absolute_error")


def get(identifier) -> Loss:
    if isinstance(identifier, Loss):
        return identifier
    name = getattr(identifier, "__name__", identifier) if callable(identifier) else identifier
    if isinstance(name, str) and name.lower() in BY_NAME:
        return BY_NAME[name.lower()]()
    raise one_of("loss", identifier, list(BY_NAME))


def check_class_weight(class_weight) -> dict:
    """fit(class_weight=...): a dict {class id: weight}, as Keras takes it."""
    import math
    import numbers

    if not isinstance(class_weight, dict) or not all(
            isinstance(k, numbers.Integral) and not isinstance(k, bool) and k >= 0
            and isinstance(w, numbers.Real) and not isinstance(w, bool) and math.isfinite(w)
            for k, w in class_weight.items()):
        raise CnnkitError(f"fit(): class_weight={class_weight!r} is not understood; valid: a "
                          "dict {class id: weight}, e.g. {0: 1.0, 1: 5.0}")
    return {int(k): float(w) for k, w in class_weight.items()}


def sample_weights(y, class_weight: dict):
    """Each image's weight (B,) from its class, as Keras's class_weight_to_sample_weights:
    one-hot rows by their argmax, 0/1 labels rounded; classes not in the dict weigh 1."""
    import torch

    ids = y.argmax(dim=-1) if y.dim() > 1 and y.shape[-1] != 1 else y.reshape(len(y))
    ids = ids.float().round().long()
    w = torch.ones(len(ids), device=y.device)
    for k, weight in class_weight.items():
        w[ids == k] = weight
    return w


# -- metrics ------------------------------------------------------------------------------------
ACCURACY_NAMES = ("accuracy", "acc", "sparse_categorical_accuracy", "categorical_accuracy",
                  "binary_accuracy")


def metric_kind(name: str, loss: Loss) -> str:
    """Which accuracy Keras computes for `name` with `loss` ('accuracy' follows the loss)."""
    if name in ("accuracy", "acc"):
        return {"categorical_crossentropy": "categorical_accuracy",
                "binary_crossentropy": "binary_accuracy"}.get(loss.name, "sparse_categorical_accuracy")
    return name


def correct(kind: str, logits, activation, y):
    """Number of right answers in the batch (a tensor) for an accuracy `kind`."""
    if kind == "binary_accuracy":
        p = core.predictions(logits, activation if activation in ("softmax", "sigmoid")
                             else core.LINEAR)
        return ((p > 0.5).float() == y.float().reshape(p.shape)).float().mean(dim=1).sum()
    pred = logits.argmax(dim=1)
    if kind == "categorical_accuracy" or (y.dim() == 2 and y.shape[1] > 1):
        return (pred == y.argmax(dim=1)).sum()
    return (pred == y.reshape(-1).long()).sum()
