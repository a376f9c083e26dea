"""VGG16 (Simonyan & Zisserman, 2015), layer for layer as keras.applications.VGG16: five
blocks of 3×3 'same' convs, each ending in a 2×2 max pool, then two 4096-unit layers."""
from __future__ import annotations

from cnnkit.layers import Conv2D, Dense, Flatten, MaxPooling2D
from cnnkit.model.applications.common import check_arguments, image_input, top
from cnnkit.model.applications.pretrained import weights_source, with_weights
from cnnkit.model.graph import Functional

BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # VGG16: (filters, convs) per block


def VGG16(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
          classes=1000, classifier_activation="softmax", name="vgg16") -> Functional:
    check_arguments("VGG16", weights, pooling, classes, include_top, classifier_activation,
                    input_shape)
    inputs = x = image_input("VGG16", input_tensor, input_shape)
    source = weights_source("VGG16", weights)  # torchvision's vgg16 is this network
    for b, (filters, convs) in enumerate(BLOCKS, 1):
        for c in range(1, convs + 1):
            x = Conv2D(filters, 3, padding="same", activation="relu", name=f"block{b}_conv{c}")(x)
        x = MaxPooling2D(2, strides=2, name=f"block{b}_pool")(x)
    if include_top:  # VGG's own top: Flatten and two hidden layers, not global pooling
        x = Flatten(name="flatten")(x)
        x = Dense(4096, activation="relu", name="fc1")(x)
        x = Dense(4096, activation="relu", name="fc2")(x)
        x = Dense(classes, activation=classifier_activation, name="predictions")(x)
    else:
        x = top(x, False, pooling, classes, classifier_activation)
    return with_weights(Functional(inputs, x, name=name), "VGG16", weights, include_top, source)
