"""What the graph tests share: a small residual graph, as a model file and in Python."""
from __future__ import annotations

import cnnkit.layers as L

Add = L.Add


# digits (8x8x1, 10 classes): stem conv, a residual block whose skip joins at `add`, a head
RESIDUAL_YAML = """\
name: residual-digits
layers:
  - InputLayer: {shape: [8, 8, 1], name: image}
  - Conv2D: {filters: 8, kernel_size: 3, padding: same, activation: relu, name: stem}
  - Conv2D: {filters: 8, kernel_size: 3, padding: same, activation: relu, name: conv_a}
  - Conv2D: {filters: 8, kernel_size: 3, padding: same, name: conv_b}
  - Add: {name: add, inputs: [stem, conv_b]}
  - Activation: {activation: relu, name: relu}
  - GlobalAveragePooling2D: {name: gap}
  - Dense: {units: 10, activation: softmax, name: head}
outputs: [head]
"""
# edges: image->stem, stem->conv_a, conv_a->conv_b, stem->add, conv_b->add, add->relu,
# relu->gap, gap->head
RESIDUAL_EDGES = 8


def residual_model(input_shape=(8, 8, 1), classes=10):
    """The same graph in Python (the functional API)."""
    inputs = L.Input(input_shape, name="image")
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    y = L.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(x)
    y = L.Conv2D(8, 3, padding="same", name="conv_b")(y)
    y = L.Activation("relu", name="relu")(Add(name="add")([x, y]))
    outputs = L.Dense(classes, activation="softmax", name="head")(
        L.GlobalAveragePooling2D(name="gap")(y))
    from cnnkit.model.graph import Functional

    return Functional(inputs, outputs, name="residual")
