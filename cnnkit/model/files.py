"""Model files: the same description as YAML, TOML or JSON.

    input_shape: [28, 28, 1]
    layers:
      - Conv2D: {filters: 32, kernel_size: 3, activation: relu}
      - Flatten: {}
      - Dense: {units: 10, activation: softmax}

Reading is bounded (cnnkit.io.bounded).
"""
from __future__ import annotations

from pathlib import Path


def load_model_file(path):
    from cnnkit.model.resolve import load_file

    return load_file(Path(path))[0]


def resolve_model(spec):
    """A model named on the command line (any reference cnnkit.model.resolve takes: a preset,
    a model file, a saved model or run directory, a Keras file), or a model description (the
    dict `Sequential.get_config()` returns)."""
    from cnnkit.model.resolve import open_model

    return open_model(spec)[0]
