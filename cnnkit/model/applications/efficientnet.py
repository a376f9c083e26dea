"""EfficientNetB0 (Tan & Le, 2019), layer for layer as keras.applications.EfficientNetB0:
MBConv blocks (expand → depthwise → squeeze-and-excite → project) with swish, and the input
scaling (Rescaling 1/255, Normalization) inside the network, as Keras builds it.

Initial weights are cnnkit's Keras defaults (Glorot-uniform kernels); Keras draws EfficientNet's
from a fan-out variance scaling, which changes only where training starts from."""
from __future__ import annotations

import math

from cnnkit.layers import (Activation, Add, Conv2D, Dense, DepthwiseConv2D, Dropout,
                           GlobalAveragePooling2D, Multiply, Normalization, Rescaling, Reshape)
from cnnkit.model.applications.common import (batch_norm, check_arguments, image_input,
                                              make_divisible, stride2_pad, top)
from cnnkit.layers.imagenet import TORCH_STD as IMAGENET_STD  # Keras's IMAGENET_STDDEV_RGB
from cnnkit.model.applications.pretrained import weights_source, with_weights
from cnnkit.model.graph import Functional

# (kernel, repeats, filters in, filters out, expansion, stride) per stage; every block has a
# squeeze-and-excite of ratio 0.25 and an identity skip where the shape allows
STAGES = ((3, 1, 32, 16, 1, 1), (3, 2, 16, 24, 6, 2), (5, 2, 24, 40, 6, 2),
          (3, 3, 40, 80, 6, 2), (5, 3, 80, 112, 6, 1), (5, 4, 112, 192, 6, 2),
          (3, 1, 192, 320, 6, 1))
SE_RATIO = 0.25
SWISH = "silu"  # Keras's 'swish' under cnnkit's (and PyTorch's) name


def _block(x, kernel, filters_in, filters_out, expansion, stride, drop_rate, name, source):
    inputs = x
    filters = filters_in * expansion
    if expansion != 1:
        x = Conv2D(filters, 1, padding="same", use_bias=False, name=f"{name}expand_conv")(x)
        x = batch_norm(f"{name}expand_bn", source)(x)
        x = Activation(SWISH, name=f"{name}expand_activation")(x)
    if stride == 2:
        x = stride2_pad(x, kernel, source, f"{name}dwconv_pad")
    x = DepthwiseConv2D(kernel, strides=stride, padding="same" if stride == 1 else "valid",
                        use_bias=False, name=f"{name}dwconv")(x)
    x = Activation(SWISH, name=f"{name}activation")(batch_norm(f"{name}bn", source)(x))
    # squeeze-and-excite: per-channel gates from the globally pooled features
    se = GlobalAveragePooling2D(name=f"{name}se_squeeze")(x)
    se = Reshape((1, 1, filters), name=f"{name}se_reshape")(se)
    se = Conv2D(max(1, int(filters_in * SE_RATIO)), 1, padding="same", activation=SWISH,
                name=f"{name}se_reduce")(se)
    se = Conv2D(filters, 1, padding="same", activation="sigmoid", name=f"{name}se_expand")(se)
    x = Multiply(name=f"{name}se_excite")([x, se])
    x = Conv2D(filters_out, 1, padding="same", use_bias=False, name=f"{name}project_conv")(x)
    x = batch_norm(f"{name}project_bn", source)(x)
    if stride == 1 and filters_in == filters_out:
        if drop_rate > 0:  # stochastic depth: the whole residual branch dropped per image
            x = Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}drop")(x)
        x = Add(name=f"{name}add")([x, inputs])
    return x


def _efficientnet(builder, width, depth, dropout_rate, include_top, weights, input_tensor,
                  input_shape, pooling, classes, classifier_activation, name, default_size,
                  drop_connect_rate=0.2):
    check_arguments(builder, weights, pooling, classes, include_top, classifier_activation,
                    input_shape, default_size)
    inputs = image_input(builder, input_tensor, input_shape, default_size)

    def filters(n):
        return make_divisible(n * width)

    def repeats(n):
        return int(math.ceil(depth * n))

    source = weights_source(builder, weights)
    # a PyTorch file's network takes its input preprocessed (the model's preprocessing does it);
    # Keras's scales 0-255 pixels itself
    x = inputs if source is not None else Normalization(axis=-1)(Rescaling(1.0 / 255.0)(inputs))
    if weights == "imagenet":
        # Keras's published files hold the ImageNet std as Normalization's *variance* (the
        # original divides by the variance): Keras divides by sqrt(std) once more, and so must we
        x = Rescaling([1.0 / math.sqrt(s) for s in IMAGENET_STD])(x)
    x = stride2_pad(x, 3, source, "stem_conv_pad")
    x = Conv2D(filters(32), 3, strides=2, use_bias=False, name="stem_conv")(x)
    x = Activation(SWISH, name="stem_activation")(batch_norm("stem_bn", source)(x))
    total, b = float(sum(repeats(s[1]) for s in STAGES)), 0
    for i, (kernel, count, f_in, f_out, expansion, stride) in enumerate(STAGES):
        f_in, f_out = filters(f_in), filters(f_out)
        for j in range(repeats(count)):
            # after the first block of a stage: stride 1, and its input is the stage's width
            x = _block(x, kernel, f_in if j == 0 else f_out, f_out, expansion,
                       stride if j == 0 else 1, drop_connect_rate * b / total,
                       f"block{i + 1}{chr(j + 97)}_", source)
            b += 1
    x = Conv2D(filters(1280), 1, padding="same", use_bias=False, name="top_conv")(x)
    x = Activation(SWISH, name="top_activation")(batch_norm("top_bn", source)(x))
    if include_top:
        x = GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout_rate > 0:
            x = Dropout(dropout_rate, name="top_dropout")(x)
        x = Dense(classes, activation=classifier_activation, name="predictions")(x)
    else:
        x = top(x, False, pooling, classes, classifier_activation, ("avg_pool", "max_pool"))
    return with_weights(Functional(inputs, x, name=name), builder, weights, include_top, source)


def EfficientNetB0(include_top=True, weights=None, input_tensor=None, input_shape=None,
                   pooling=None, classes=1000, classifier_activation="softmax",
                   name="efficientnetb0") -> Functional:
    return _efficientnet("EfficientNetB0", 1.0, 1.0, 0.2, include_top, weights, input_tensor,
                         input_shape, pooling, classes, classifier_activation, name, 224)
