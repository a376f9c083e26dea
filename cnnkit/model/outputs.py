"""The output contract under the model stage's name: the same functions as
cnnkit.layers.outputs, where they are written once (the built network below the model stage
applies them too)."""
from cnnkit.layers.outputs import (  # noqa: F401
    check_classes, class_count, predicted_class, probabilities)

__all__ = ["check_classes", "class_count", "predicted_class", "probabilities"]
