"""ResNet50 (He et al., 2015), layer for layer as keras.applications.ResNet50 (v1: batch norm
after each conv, the shortcut added before the last ReLU)."""
from __future__ import annotations

from cnnkit.layers import Activation, Add, BatchNormalization, Conv2D, MaxPooling2D, ZeroPadding2D
from cnnkit.model.applications.common import check_arguments, image_input, top
from cnnkit.model.applications.pretrained import weights_source, with_weights
from cnnkit.model.graph import Functional

STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (filters, blocks, first stride)
EPSILON = 1.001e-5  # Keras's ResNet batch norms


def _bn(name):
    return BatchNormalization(epsilon=EPSILON, name=name)


def _block(x, filters, stride, shortcut_conv, name):
    """1×1 → 3×3 → 1×1 (4·filters) bottleneck plus its shortcut. The layers are created in the
    order Keras lists them (by depth: the shortcut conv beside the last conv), so the model's
    layer list, and a weight file read in that order, are Keras's."""
    y = Conv2D(filters, 1, strides=stride, name=f"{name}_1_conv")(x)
    y = Activation("relu", name=f"{name}_1_relu")(_bn(f"{name}_1_bn")(y))
    y = Conv2D(filters, 3, padding="same", name=f"{name}_2_conv")(y)
    y = Activation("relu", name=f"{name}_2_relu")(_bn(f"{name}_2_bn")(y))
    shortcut = Conv2D(4 * filters, 1, strides=stride, name=f"{name}_0_conv")(x) if shortcut_conv else x
    y = Conv2D(4 * filters, 1, name=f"{name}_3_conv")(y)
    if shortcut_conv:
        shortcut = _bn(f"{name}_0_bn")(shortcut)
    y = _bn(f"{name}_3_bn")(y)
    y = Add(name=f"{name}_add")([shortcut, y])
    return Activation("relu", name=f"{name}_out")(y)


def ResNet50(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
             classes=1000, classifier_activation="softmax", name="resnet50") -> Functional:
    check_arguments("ResNet50", weights, pooling, classes, include_top, classifier_activation,
                    input_shape)
    weights_source("ResNet50", weights)  # PyTorch's ResNet50 files (v1.5) refused here
    inputs = image_input("ResNet50", input_tensor, input_shape)
    x = ZeroPadding2D(((3, 3), (3, 3)), name="conv1_pad")(inputs)
    x = Conv2D(64, 7, strides=2, name="conv1_conv")(x)
    x = Activation("relu", name="conv1_relu")(_bn("conv1_bn")(x))
    x = ZeroPadding2D(((1, 1), (1, 1)), name="pool1_pad")(x)
    x = MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, (filters, blocks, stride) in enumerate(STAGES, 2):
        for b in range(1, blocks + 1):
            x = _block(x, filters, stride if b == 1 else 1, b == 1, f"conv{stage}_block{b}")
    x = top(x, include_top, pooling, classes, classifier_activation, ("avg_pool", "max_pool"))
    return with_weights(Functional(inputs, x, name=name), "ResNet50", weights, include_top)
