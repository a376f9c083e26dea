"""MobileNetV2 (Sandler et al., 2018), layer for layer as keras.applications.MobileNetV2:
inverted residual blocks (1×1 expand → 3×3 depthwise → 1×1 linear project), ReLU6."""
from __future__ import annotations

from cnnkit.errors import CnnkitError, clipped
from cnnkit.layers import Add, Conv2D, DepthwiseConv2D, ReLU
from cnnkit.model.applications.common import (batch_norm, check_arguments, image_input,
                                              make_divisible, stride2_pad, top)
from cnnkit.model.applications.pretrained import (MOBILENET_ALPHAS, MOBILENET_SIZES,
                                                  weights_source, with_weights)
from cnnkit.model.graph import Functional

# (output filters before alpha, stride, expansion) of blocks 0..16
BLOCKS = ((16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6), (32, 1, 6),
          (64, 2, 6), (64, 1, 6), (64, 1, 6), (64, 1, 6), (96, 1, 6), (96, 1, 6), (96, 1, 6),
          (160, 2, 6), (160, 1, 6), (160, 1, 6), (320, 1, 6))


def _bn(name, source):
    return batch_norm(name, source, momentum=0.999, epsilon=1e-3)


def _inverted_res_block(x, filters, stride, expansion, alpha, block_id, source):
    channels = x.shape[-1]
    out = make_divisible(int(filters * alpha))
    inputs = x
    prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
    if block_id:  # block 0 keeps its 32 channels: nothing to expand
        x = Conv2D(expansion * channels, 1, padding="same", use_bias=False,
                   name=f"{prefix}expand")(x)
        x = ReLU(6.0, name=f"{prefix}expand_relu")(_bn(f"{prefix}expand_BN", source)(x))
    if stride == 2:
        x = stride2_pad(x, 3, source, f"{prefix}pad")
    x = DepthwiseConv2D(3, strides=stride, use_bias=False, padding="same" if stride == 1 else "valid",
                        name=f"{prefix}depthwise")(x)
    x = ReLU(6.0, name=f"{prefix}depthwise_relu")(_bn(f"{prefix}depthwise_BN", source)(x))
    x = Conv2D(out, 1, padding="same", use_bias=False, name=f"{prefix}project")(x)
    x = _bn(f"{prefix}project_BN", source)(x)  # linear: no activation after the projection
    if channels == out and stride == 1:
        return Add(name=f"{prefix}add")([inputs, x])
    return x


def MobileNetV2(input_shape=None, alpha=1.0, include_top=True, weights=None, input_tensor=None,
                pooling=None, classes=1000, classifier_activation="softmax",
                name=None) -> Functional:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise CnnkitError(f"MobileNetV2: alpha={clipped(alpha)}; valid: a number > 0 (the "
                          "width multiplier, 1.0 for the standard network)")
    if weights == "imagenet" and alpha not in MOBILENET_ALPHAS:
        raise CnnkitError(f"MobileNetV2: alpha={clipped(alpha)} with weights='imagenet'; valid: "
                          f"{', '.join(map(str, MOBILENET_ALPHAS))} (the widths Keras publishes)")
    inputs = image_input("MobileNetV2", input_tensor, input_shape)
    rows = _weights_rows(inputs)
    check_arguments("MobileNetV2", weights, pooling, classes, include_top, classifier_activation,
                    input_shape, rows)
    source = weights_source("MobileNetV2", weights)
    x = inputs
    if source is not None and source.torch_padding:  # Keras pads inside Conv1 ('same')
        x = stride2_pad(x, 3, source, "Conv1_pad")
    x = Conv2D(make_divisible(32 * alpha), 3, strides=2, use_bias=False, name="Conv1",
               padding="valid" if x is not inputs else "same")(x)
    x = ReLU(6.0, name="Conv1_relu")(_bn("bn_Conv1", source)(x))
    for block_id, (filters, stride, expansion) in enumerate(BLOCKS):
        x = _inverted_res_block(x, filters, stride, expansion, alpha, block_id, source)
    # the last 1×1 conv widens with alpha only above 1 (Keras keeps 1280 for thinner nets)
    x = Conv2D(make_divisible(1280 * alpha) if alpha > 1.0 else 1280, 1, use_bias=False,
               name="Conv_1")(x)
    x = ReLU(6.0, name="out_relu")(_bn("Conv_1_bn", source)(x))
    x = top(x, include_top, pooling, classes, classifier_activation)
    model = Functional(inputs, x,
                       name=name or f"mobilenetv2_{alpha:0.2f}_{_rows(inputs, input_shape)}")
    return with_weights(model, "MobileNetV2", weights, include_top, source, alpha=alpha,
                        rows=rows)


def _weights_rows(inputs) -> int:
    """The size of the ImageNet weights Keras loads: the input's where it is square and one of
    the sizes Keras trained at, else 224's (any size shares the same convolution weights)."""
    h, w = inputs.shape[-3], inputs.shape[-2]
    return h if h == w and h in MOBILENET_SIZES else 224


def _rows(inputs, input_shape) -> int:
    """The size Keras names the model by: input_shape's height; else the input tensor's where
    it is square and one of ImageNet weights' sizes; else the default, 224."""
    if input_shape is not None:
        return input_shape[0]
    h, w = inputs.shape[-3], inputs.shape[-2]
    return h if h == w and h in (96, 128, 160, 192, 224) else 224
