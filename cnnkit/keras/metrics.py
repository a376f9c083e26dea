"""Keras's metric names for `compile(metrics=[...])`: the accuracies. Objects stand for their
names (`metrics.SparseCategoricalAccuracy(name="acc")` logs 'acc')."""
from __future__ import annotations

from cnnkit.errors import one_of
from cnnkit.keras.losses import ACCURACY_NAMES


class Metric:
    kind = "accuracy"

    def __init__(self, name=None, dtype=None):
        self.name = name or self.kind


class Accuracy(Metric):
    kind = "accuracy"


class SparseCategoricalAccuracy(Metric):
    kind = "sparse_categorical_accuracy"


class CategoricalAccuracy(Metric):
    kind = "categorical_accuracy"


class BinaryAccuracy(Metric):
    kind = "binary_accuracy"


def resolve(metrics) -> list[tuple[str, str]]:
    """[(logged name, accuracy kind)] for compile's `metrics` (a name, a list, or objects)."""
    if metrics is None:
        return []
    if isinstance(metrics, (str, Metric)):
        metrics = [metrics]
    out = []
    for m in metrics:
        if isinstance(m, Metric):
            out.append((m.name, m.kind))
        elif isinstance(m, str) and m in ACCURACY_NAMES:
            out.append((m, m))
        else:
            raise one_of("metric", m, list(ACCURACY_NAMES))
    return out
