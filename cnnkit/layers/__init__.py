"""Layers, the Keras way: `from cnnkit import layers as L; L.Conv2D(32, 3, activation="relu")`.

    base.py          the Layer base class, argument checks, sliding-window arithmetic (no torch)
    core.py          the built-in layers and the registry that model files name them by;
                     `@register_layer` adds a Layer subclass of your own (see Layer's docstring)
    nn.py            the PyTorch modules they build into (imported only when a model is built)
    outputs.py       the output contract: logits -> class probabilities, the predicted class
    initializers.py  Keras's and PyTorch's weight initializations
    symbolic.py      the functional API's Input and symbolic tensors (graphs are traced from them)
"""
from cnnkit.layers.base import (  # noqa: F401
    ACTIVATIONS, INITIALIZERS, Layer, Shape, check_input_shape, resolve_padding, same_padding)
from cnnkit.layers.symbolic import Input, InputLayer, Tensor  # noqa: F401
from cnnkit.layers.core import (  # noqa: F401
    LAYER_TYPES, Activation, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout,
    Flatten, GlobalAveragePooling2D, LeakyReLU, MaxPooling2D, ZeroPadding2D, layer_from_config,
    layer_to_config, register_layer)

__all__ = ["Input", "InputLayer", "Tensor", "Layer", "Conv2D", "MaxPooling2D", "AveragePooling2D", "ZeroPadding2D",
           "Flatten", "GlobalAveragePooling2D", "Dense", "Dropout", "BatchNormalization",
           "Activation", "LeakyReLU", "LAYER_TYPES", "register_layer", "layer_from_config",
           "layer_to_config"]
