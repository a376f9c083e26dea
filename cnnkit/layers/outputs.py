"""The output contract: what a classifier's logits mean, written once. It lives with the
layers because the built network (nn.py's `Net.probabilities`) applies it; the model stage
names it too (`cnnkit.model.outputs`, the same functions).

The network returns logits (N, units) and declares the activation its last layer had
(`Net.output_activation`: 'softmax', 'sigmoid' or None). Every reader of model outputs (predict,
`cnnkit evaluate`, the run report, training accuracy) goes through these functions:

    last layer                      classes   probabilities (N, K)          predicted class
    Dense(K, softmax) or no act.    K         softmax(logits)               argmax
    Dense(K > 1, sigmoid)           K         sigmoid(logits), per unit     argmax
    Dense(1, sigmoid)               2         [1 - p, p], p = sigmoid(z)    1 iff p > 0.5

A single unit is always read as P(class 1) through a sigmoid: a softmax over one unit is
constantly 1, and the losses refuse to train one. The predicted class is the argmax of the
probabilities themselves (float32), so a report's classes and its probabilities never disagree,
even where saturated probabilities tie.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads with the first tensor: the shape rules stay importable cheaply
    import torch


def class_count(units: int) -> int:
    """How many classes an output of `units` values stands for: one unit means two."""
    return 2 if units == 1 else units


def probabilities(logits: torch.Tensor, output_activation: str | None) -> torch.Tensor:
    """Class probabilities (N, K), K = class_count(units), from logits (N, units)."""
    import torch

    if logits.shape[1] == 1:
        p = torch.sigmoid(logits)  # (N, 1): P(class 1)
        return torch.cat([1 - p, p], dim=1)  # 1 - p is exact for p >= 0.5: argmax is p > 0.5
    if output_activation == "sigmoid":
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)


def predicted_class(logits: torch.Tensor, output_activation: str | None = None) -> torch.Tensor:
    """(N,) class ids, the argmax of `probabilities` (ties go to the lower id; for one unit,
    class 1 iff p > 0.5)."""
    return probabilities(logits.float(), output_activation).argmax(dim=1)


def check_classes(units: int, num_classes: int, dataset: str) -> None:
    """A CnnkitError unless an output of `units` values fits data with `num_classes` classes."""
    from cnnkit.errors import CnnkitError

    if class_count(units) != num_classes:
        fix = "Dense(1, activation='sigmoid') or " if num_classes == 2 else ""
        raise CnnkitError(f"the model has {units} output{'s' * (units != 1)} but {dataset} has "
                          f"{num_classes} classes; valid: a last layer {fix}Dense({num_classes})")
