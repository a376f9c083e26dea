"""Layers, the Keras way: `from cnnkit import layers as L; L.Conv2D(32, 3, activation="relu")`.

    base.py          the Layer base class, argument checks, sliding-window arithmetic (no torch)
    core.py          the built-in layers
    registry.py      the registry model files name layers by; `@register_layer` adds a Layer
                     subclass of your own (see Layer's docstring)
    conv.py          DepthwiseConv2D, SeparableConv2D (Conv2D's groups and dilation: core.py)
    dilation.py      a dilated kernel's window, for the convolutions' dilation_rate
    merge.py         Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate (several
                     inputs: graph models)
    shape.py         Reshape, GlobalMaxPooling2D
    elementwise.py   ReLU, SpatialDropout2D
    nn.py            the PyTorch modules they build into (imported only when a model is built)
    graphnet.py      a graph model's network: its layers run in dependency order
    outputs.py       the output contract: logits -> class probabilities, the predicted class
    initializers.py  Keras's and PyTorch's weight initializations
    symbolic.py      the functional API's Input and symbolic tensors (graphs are traced from them)
    preprocessing.py Rescaling, Normalization, Resizing and the random augmentation layers;
                     their modules in preprocessing_nn.py, resampling in warp.py
    imagenet.py      PreprocessInput: keras.applications' preprocess_input inside a model
"""
from cnnkit.layers.base import (  # noqa: F401
    ACTIVATIONS, INITIALIZERS, Layer, Shape, check_input_shape, resolve_padding, same_padding)
from cnnkit.layers.symbolic import Input, InputLayer, Tensor  # noqa: F401
from cnnkit.layers.core import (  # noqa: F401
    LAYER_TYPES, Activation, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout,
    Flatten, GlobalAveragePooling2D, LeakyReLU, MaxPooling2D, ZeroPadding2D, layer_from_config,
    layer_to_config, register_layer)
# -- modern CNN layers (issue 27) --
from cnnkit.layers.conv import DepthwiseConv2D, SeparableConv2D  # noqa: F401
from cnnkit.layers.elementwise import ReLU, SpatialDropout2D  # noqa: F401
from cnnkit.layers.merge import (  # noqa: F401
    Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract)
from cnnkit.layers.shape import GlobalMaxPooling2D, Reshape  # noqa: F401

__all__ = ["Input", "InputLayer", "Tensor", "Layer", "Conv2D", "MaxPooling2D", "AveragePooling2D", "ZeroPadding2D",
           "Flatten", "GlobalAveragePooling2D", "Dense", "Dropout", "BatchNormalization",
           "Activation", "LeakyReLU", "LAYER_TYPES", "register_layer", "layer_from_config",
           "layer_to_config"]
# -- modern CNN layers (issue 27) --
__all__ += ["DepthwiseConv2D", "SeparableConv2D", "ReLU", "SpatialDropout2D", "Add", "Subtract",
            "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Reshape",
            "GlobalMaxPooling2D"]

# -- preprocessing and augmentation layers (issue 27) --
from cnnkit.layers.preprocessing import (  # noqa: E402,F401
    Normalization, RandomContrast, RandomFlip, RandomRotation, RandomTranslation, RandomZoom,
    Rescaling, Resizing)

__all__ += ["Rescaling", "Normalization", "Resizing", "RandomFlip", "RandomRotation",
            "RandomZoom", "RandomTranslation", "RandomContrast"]

# -- keras.applications' preprocess_input as a layer (issue 28) --
from cnnkit.layers.imagenet import PreprocessInput  # noqa: E402,F401

__all__ += ["PreprocessInput"]
