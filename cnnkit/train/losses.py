"""Losses by their Keras names, always computed from logits.

The model returns logits and declares what its last layer was (`output_activation`: 'softmax',
'sigmoid' or None). Keras users write `Dense(10, activation='softmax')` together with a
cross-entropy loss; applying that softmax and then a log would lose precision (and PyTorch's
`cross_entropy` would apply a second softmax). Here every loss takes the logits and works in
log space, so the declared activation is applied exactly once, stably.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnkit.errors import CnnkitError, one_of
from cnnkit.model import outputs
from cnnkit.train.config import LOSSES

OUTPUT_ACTIVATIONS = ("softmax", "sigmoid", None)


def _log_probs(logits: torch.Tensor, activation: str | None) -> torch.Tensor:
    """Log class probabilities (B, K) for what the model declares.

    Keras's categorical cross-entropy on non-softmax outputs (e.g. a sigmoid layer) first
    normalizes them to sum to one; in log space that is log_sigmoid minus its logsumexp."""
    if activation == "sigmoid":
        log_p = F.logsigmoid(logits)
        return log_p - torch.logsumexp(log_p, dim=1, keepdim=True)
    return F.log_softmax(logits, dim=1)


def _one_hot(y: torch.Tensor, k: int, smoothing: float) -> torch.Tensor:
    target = F.one_hot(y, k).float()
    if smoothing:
        target = target * (1.0 - smoothing) + smoothing / k
    return target


def make_loss(name: str, num_classes: int, output_activation: str | None = "softmax",
              label_smoothing: float = 0.0):
    """A callable `(logits (B, K), y int64 (B,)) -> scalar` for the named loss.

    `binary_crossentropy` needs two classes (a 1-unit sigmoid output, or 2 units)."""
    if name not in LOSSES:
        raise one_of("loss", name, LOSSES)
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise one_of("output activation", output_activation, ["softmax", "sigmoid", "None"])
    if not 0.0 <= label_smoothing < 1.0:
        raise CnnkitError(f"label_smoothing={label_smoothing} is out of range; valid: 0 <= x < 1")
    if name == "binary_crossentropy" and num_classes != 2:
        raise CnnkitError(f"binary_crossentropy needs 2 classes; the data has {num_classes} "
                          "— use sparse_categorical_crossentropy")
    ls, act = float(label_smoothing), output_activation

    def check_units(logits: torch.Tensor) -> None:
        units = logits.shape[1]
        expected = (1, 2) if name == "binary_crossentropy" else (num_classes,)
        if units not in expected:
            raise CnnkitError(f"the model outputs {units} units but the data has {num_classes} "
                              f"classes; make the last layer Dense({num_classes})")

    def categorical(logits, y):
        check_units(logits)
        if act == "sigmoid":
            return -(_one_hot(y, num_classes, ls) * _log_probs(logits.float(), act)).sum(1).mean()
        # Softmax (or plain logits): PyTorch's fused kernel, same math as the one-hot form.
        return F.cross_entropy(logits.float(), y, label_smoothing=ls)

    def binary(logits, y):
        check_units(logits)
        logits = logits.float()
        if logits.shape[1] == 1:
            if act == "softmax":
                raise CnnkitError("binary_crossentropy on a 1-unit softmax output always "
                                  "predicts 1; use activation='sigmoid' on the last layer")
            target = y.float().unsqueeze(1)
            if ls:
                target = target * (1.0 - ls) + 0.5 * ls
            return F.binary_cross_entropy_with_logits(logits, target)
        target = F.one_hot(y, 2).float()
        if ls:
            target = target * (1.0 - ls) + 0.5 * ls
        if act == "sigmoid":
            return F.binary_cross_entropy_with_logits(logits, target)
        # Two softmax units: p1 = 1 - p0, so Keras's per-unit BCE equals the cross-entropy.
        return -(target * F.log_softmax(logits, dim=1)).sum(1).mean()

    def mse(logits, y):
        check_units(logits)
        probs = probabilities(logits.float(), act)  # (B, K); check_units admits K units only
        return F.mse_loss(probs, _one_hot(y, probs.shape[1], ls))

    fn = {"sparse_categorical_crossentropy": categorical, "categorical_crossentropy": categorical,
          "binary_crossentropy": binary, "mse": mse}[name]
    fn.__name__ = name
    return fn


def probabilities(logits: torch.Tensor, output_activation: str | None) -> torch.Tensor:
    """Class probabilities (B, K) by the output contract (cnnkit.model.outputs)."""
    return outputs.probabilities(logits, output_activation)


def predicted_class(logits: torch.Tensor, output_activation: str | None = None) -> torch.Tensor:
    """(B,) class ids by the output contract: for one unit, class 1 iff sigmoid(logit) > 0.5."""
    return outputs.predicted_class(logits, output_activation)


def correct_count(logits: torch.Tensor, y: torch.Tensor,
                  output_activation: str | None = None) -> torch.Tensor:
    """Number of right predictions as a tensor (no host sync, so it can be summed per batch)."""
    return (outputs.predicted_class(logits, output_activation) == y).sum()


def accuracy(logits: torch.Tensor, y: torch.Tensor, output_activation: str | None = None) -> float:
    """Fraction of samples whose predicted class is the label."""
    return correct_count(logits, y, output_activation).item() / max(len(y), 1)
