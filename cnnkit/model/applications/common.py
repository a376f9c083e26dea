"""What every application builder shares, as keras.applications' imagenet_utils defines it:
the argument checks, the input, the classifier top (or the pooling of a feature extractor)
and the asymmetric padding before a stride-2 window."""
from __future__ import annotations

from cnnkit.errors import CnnkitError, clipped
from cnnkit.layers import (BatchNormalization, Dense, GlobalAveragePooling2D, GlobalMaxPooling2D,
                           Input, ZeroPadding2D)
from cnnkit.layers.symbolic import InputLayer, Tensor
from cnnkit.model.applications.pretrained import check_weights
from cnnkit.model.applications.torch_files import TORCH_MOMENTUM

POOLINGS = (None, "avg", "max")


def check_arguments(builder: str, weights, pooling, classes, include_top=True,
                    classifier_activation="softmax", input_shape=None, default_size=224) -> None:
    """One line for each argument Keras's builders refuse (or that cnnkit cannot honour)."""
    if pooling not in POOLINGS:
        raise CnnkitError(f"{builder}: pooling={clipped(pooling)}; valid: None, 'avg', 'max'")
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise CnnkitError(f"{builder}: classes={clipped(classes)}; valid: a positive integer")
    check_weights(builder, weights, include_top, classes, classifier_activation, input_shape,
                  default_size)


def image_input(builder: str, input_tensor, input_shape, default_size=224,
                min_size=32) -> Tensor:
    """The network's input: `input_tensor` (an Input) as given, else Input(input_shape),
    (default_size, default_size, 3) when None; Keras's smallest height and width apply."""
    if input_tensor is not None:
        if not (isinstance(input_tensor, Tensor) and isinstance(input_tensor.layer, InputLayer)):
            raise CnnkitError(f"{builder}: input_tensor={clipped(input_tensor)}; valid: an "
                              "Input((height, width, channels)) tensor")
        shape = tuple(input_tensor.shape[-3:])
    else:
        shape = (default_size, default_size, 3) if input_shape is None else input_shape
    if (not isinstance(shape, (list, tuple)) or len(shape) != 3
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape)
            or shape[0] < min_size or shape[1] < min_size or shape[2] < 1):
        raise CnnkitError(f"{builder}: input_shape={clipped(shape)}; valid: (height, width, "
                          f"channels) with height and width at least {min_size}")
    return input_tensor if input_tensor is not None else Input(tuple(shape))


def top(x, include_top, pooling, classes, classifier_activation, pool_names=(None, None)):
    """Keras's end of a network: global average pooling and the `predictions` layer, or, with
    include_top=False, the pooling asked for (none: the last feature maps)."""
    avg, most = pool_names
    if include_top:
        x = GlobalAveragePooling2D(name=avg)(x)
        return Dense(classes, activation=classifier_activation, name="predictions")(x)
    if pooling == "avg":
        return GlobalAveragePooling2D(name=avg)(x)
    if pooling == "max":
        return GlobalMaxPooling2D(name=most)(x)
    return x


def correct_pad(shape, kernel_size: int):
    """ZeroPadding2D's ((top, bottom), (left, right)) before a 'valid' stride-2 window, so the
    output is ceil(size / 2) as TensorFlow's 'same' padding: one row less at the top and left
    where the size is even."""
    h, w = shape[0], shape[1]
    k = kernel_size // 2
    return ((k - 1 + h % 2, k), (k - 1 + w % 2, k))


def stride2_pad(x, kernel_size: int, source, name: str):
    """`x` padded for a 'valid' stride-2 window: TensorFlow's 'same' (correct_pad), or, where the
    weights come from a PyTorch network that pads symmetrically (`source.torch_padding`),
    kernel_size // 2 on every side."""
    k = kernel_size // 2
    pad = ((k, k), (k, k)) if source is not None and source.torch_padding else correct_pad(
        x.shape[-3:], kernel_size)
    return ZeroPadding2D(pad, name=name)(x)


def batch_norm(name: str, source, **keras_args) -> BatchNormalization:
    """Keras's BatchNormalization(**keras_args), or, for a PyTorch file's network (`source`),
    that network's epsilon and PyTorch's momentum."""
    if source is None:
        return BatchNormalization(name=name, **keras_args)
    return BatchNormalization(momentum=TORCH_MOMENTUM, epsilon=source.epsilon or 1e-5, name=name)


def make_divisible(value, divisor: int = 8) -> int:
    """The nearest multiple of `divisor`, never more than 10% below `value` (MobileNet's and
    EfficientNet's channel counts)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new
