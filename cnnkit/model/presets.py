"""Named architectures: every seed model, and fast ones, by name.

A decorator registry maps a preset name to a builder; `create_model(name, **overrides)` drops
None overrides so the preset's own defaults win (timm's pattern).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from cnnkit.errors import one_of
from cnnkit.layers import (Activation, Add, BatchNormalization, Conv2D, Dense, Dropout, Flatten,
                           GlobalAveragePooling2D, Input, MaxPooling2D)
from cnnkit.model import applications
from cnnkit.model.graph import Functional
from cnnkit.model.sequential import Sequential


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    input_shape: tuple[int, int, int]
    num_classes: int
    builder: Callable[..., Sequential]


PRESETS: dict[str, Preset] = {}


def register_preset(name: str, description: str, input_shape=(28, 28, 1), num_classes=10):
    def wrap(fn):
        PRESETS[name] = Preset(name, description, tuple(input_shape), num_classes, fn)
        return fn
    return wrap


def create_model(name: str, input_shape=None, num_classes=None, **overrides) -> Sequential:
    """Build preset `name`; `input_shape`/`num_classes` adapt it to other data."""
    if name not in PRESETS:
        raise one_of("preset", name, PRESETS)
    preset = PRESETS[name]
    kwargs = {k: v for k, v in overrides.items() if v is not None}
    model = preset.builder(input_shape=tuple(input_shape or preset.input_shape),
                           num_classes=num_classes or preset.num_classes, **kwargs)
    model.name = name
    return model


# -- the seed models (SEEDS.md gives each one's shapes and parameter count) ---------------------
@register_preset("seed000-first", "seed 000's first model: Conv32 → MaxPool → Dense softmax")
def seed000_first(input_shape, num_classes):
    return Sequential([Conv2D(32, 3, activation="relu"), MaxPooling2D(2), Flatten(),
                       Dense(num_classes, activation="softmax")], input_shape=input_shape)


@register_preset("seed000-mnist", "seed 000's train_mnist_model: two conv blocks, Dense 16")
def seed000_mnist(input_shape, num_classes):
    return Sequential([Conv2D(32, 3, activation="relu"), MaxPooling2D(2),
                       Conv2D(64, 3, activation="relu"), MaxPooling2D(2), Flatten(),
                       Dense(16, activation="relu"), Dense(num_classes, activation="softmax")],
                      input_shape=input_shape)


@register_preset("seed001-example", "seed 001's example on 24×24 RGB, 3 classes, with dropout",
                 input_shape=(24, 24, 3), num_classes=3)
def seed001_example(input_shape, num_classes):
    return Sequential([Conv2D(32, 3, activation="relu"), Conv2D(64, 3, activation="relu"),
                       Dropout(0.2), MaxPooling2D(2), Flatten(), Dense(128, activation="relu"),
                       Dense(num_classes, activation="softmax")], input_shape=input_shape)


@register_preset("seed002-fashion", "seed 002's Fashion-MNIST CNN: 'same' convs, Dense 100, dropout 0.4")
def seed002_fashion(input_shape, num_classes):
    return Sequential([Conv2D(32, 3, activation="relu", padding="same"), MaxPooling2D(2),
                       Conv2D(64, 3, activation="relu", padding="same"), MaxPooling2D(2),
                       Flatten(), Dense(100, activation="relu"), Dropout(0.4),
                       Dense(num_classes, activation="softmax")], input_shape=input_shape)


@register_preset("seed003-cnn", "seed 003's PyTorch CNN: two conv blocks, Xavier-init linear head")
def seed003_cnn(input_shape, num_classes):
    return Sequential([Conv2D(32, 3, padding=1, activation="relu"), MaxPooling2D(2),
                       Conv2D(64, 3, padding=1, activation="relu"), MaxPooling2D(2), Flatten(),
                       Dense(num_classes, kernel_initializer="xavier_uniform")],
                      input_shape=input_shape, init="torch")


@register_preset("seed003-deep", "seed 003's deeper PyTorch CNN: three conv blocks, FC 625, dropout 0.5")
def seed003_deep(input_shape, num_classes):
    return Sequential([Conv2D(32, 3, padding=1, activation="relu"), MaxPooling2D(2),
                       Conv2D(64, 3, padding=1, activation="relu"), MaxPooling2D(2),
                       Conv2D(128, 3, padding=1, activation="relu"), MaxPooling2D(2, 2, padding=1),
                       Flatten(), Dense(625, activation="relu", kernel_initializer="xavier_uniform"),
                       Dropout(0.5), Dense(num_classes, kernel_initializer="xavier_uniform")],
                      input_shape=input_shape, init="torch")


@register_preset("seed004-chollet", "seed 004's (Chollet's) convnet: three convs, Dense 64, RMSprop")
def seed004_chollet(input_shape, num_classes):
    return Sequential([Conv2D(32, 3, activation="relu"), MaxPooling2D(2),
                       Conv2D(64, 3, activation="relu"), MaxPooling2D(2),
                       Conv2D(64, 3, activation="relu"), Flatten(), Dense(64, activation="relu"),
                       Dense(num_classes, activation="softmax")], input_shape=input_shape)


# -- fast models (issue 5: time to accuracy on a CPU) ---------------------------------------------
def _conv_pool_bn(filters):
    """Conv → 2×2 max-pool → BatchNorm → ReLU (the order of fast CIFAR-10 training code such as
    hlb-CIFAR10): pooling right after the conv means batch norm and ReLU touch 4× fewer values,
    which made a training step ~17% faster than conv → BN → ReLU → pool here, at the same
    accuracy per epoch. The conv needs no bias (batch norm's beta is one). Momentum 0.9, not
    Keras's 0.99: short runs must end with moving statistics that have caught up."""
    return [Conv2D(filters, 3, padding="same", use_bias=False), MaxPooling2D(2),
            BatchNormalization(momentum=0.9), Activation("relu")]


def _stages(widths, input_shape, num_classes, dropout=0.0, hidden=0):
    layers = []
    for width in widths:
        layers += _conv_pool_bn(width)
    layers.append(Flatten())
    if hidden:  # Dense → BN → ReLU: the classifier gets a layer of its own (see fast-cnn-dense)
        layers += [Dense(hidden, use_bias=False), BatchNormalization(momentum=0.9),
                   Activation("relu")]
    if dropout:
        layers.append(Dropout(dropout))
    layers.append(Dense(num_classes, activation="softmax"))
    return Sequential(layers, input_shape=input_shape)


@register_preset("fast-cnn", "three conv stages (16-32-64), each conv → pool → batch norm → ReLU: "
                 "half seed 003's FLOPs")
def fast_cnn(input_shape, num_classes):
    return _stages((16, 32, 64), input_shape, num_classes)


@register_preset("fast-cnn-dense", "fast-cnn's three conv stages, then a 128-unit hidden layer "
                 "(Dense → batch norm → ReLU): the `fast` recipe's model")
def fast_cnn_dense(input_shape, num_classes):
    """A hidden layer costs ~4% more per step than fast-cnn (a 576x128 matmul; the convs and
    pools at 28x28 are most of a step) but learns faster per epoch: 3 epochs reach what
    fast-cnn reaches in 5 (bench/README.md, "fast")."""
    return _stages((16, 32, 64), input_shape, num_classes, hidden=128)


def _conv_bn(filters):
    """Conv → BatchNorm → ReLU, no pooling: the first conv of a two-conv stage."""
    return [Conv2D(filters, 3, padding="same", use_bias=False), BatchNormalization(momentum=0.9),
            Activation("relu")]


@register_preset("best-vgg", "VGG-style: a 32-filter stage, then two stages of two convs (64, 128), "
                 "a 256-unit hidden layer and dropout: the `best` recipe's model")
def best_vgg(input_shape, num_classes):
    """Five convs, 576k weights. The first stage stays one conv at 28x28 (it is where a step is
    memory-bound); the second convs of the 14x14 and 7x7 stages are where the capacity goes,
    and they run as well-shaped matmuls. ~4.8x fast-cnn's step time; 20 epochs reached 94.79%
    where best-cnn's 30 reached 93.70% (bench/README.md, "best")."""
    layers = _conv_pool_bn(32)
    for width in (64, 128):
        layers += _conv_bn(width) + _conv_pool_bn(width)
    layers += [Flatten(), Dense(256, use_bias=False), BatchNormalization(momentum=0.9),
               Activation("relu"), Dropout(0.25), Dense(num_classes, activation="softmax")]
    return Sequential(layers, input_shape=input_shape)


@register_preset("best-cnn", "three wider conv stages (24-48-96) as fast-cnn's, with dropout: the previous "
                 "`best` recipe's model")
def best_cnn(input_shape, num_classes):
    return _stages((24, 48, 96), input_shape, num_classes, dropout=0.25)


# -- keras.applications' networks (issue 27), weights=None: Keras's 224×224×3, 1000 classes ---
# by default, adapted to the data's shape and classes like every preset (32×32 at the least)
def _application(builder):
    def build(input_shape, num_classes):
        return builder(input_shape=tuple(input_shape), classes=num_classes)
    return build


for _name, _builder, _what in (
        ("vgg16", applications.VGG16, "VGG16: 13 3×3 convs in 5 blocks, two 4096-unit layers"),
        ("resnet50", applications.ResNet50, "ResNet50: 16 bottleneck residual blocks with batch norm"),
        ("mobilenetv2", applications.MobileNetV2, "MobileNetV2: 17 inverted residual blocks, depthwise convs, ReLU6"),
        ("efficientnetb0", applications.EfficientNetB0, "EfficientNetB0: 16 MBConv blocks with squeeze-and-excite, swish, "
         "its input scaling (Rescaling, Normalization) inside")):
    register_preset(_name, f"keras.applications' {_what}", input_shape=(224, 224, 3),
                    num_classes=1000)(_application(_builder))


# -- graph models (the functional API) ------------------------------------------------------------
def _residual_block(x, filters: int, strides: int = 1):
    """ResNet's basic block (He et al. 2016): two 3x3 conv → BN, the input added back, ReLU.
    Where the block changes the width or the size, a 1x1 conv → BN projects the input."""
    y = Activation("relu")(BatchNormalization(momentum=0.9)(
        Conv2D(filters, 3, strides, padding="same", use_bias=False)(x)))
    y = BatchNormalization(momentum=0.9)(Conv2D(filters, 3, padding="same", use_bias=False)(y))
    if strides != 1 or x.shape[-1] != filters:
        x = BatchNormalization(momentum=0.9)(Conv2D(filters, 1, strides, use_bias=False)(x))
    return Activation("relu")(Add()([x, y]))


def resnet_mini(input_shape, num_classes) -> Functional:
    """A stem conv, a 16-filter residual block, a 32-filter one at half the size, global
    average pooling and the classifier: the smallest network with ResNet's skip connections
    (about 20k weights), a graph rather than a chain."""
    inputs = Input(input_shape)
    x = Activation("relu")(BatchNormalization(momentum=0.9)(
        Conv2D(16, 3, padding="same", use_bias=False)(inputs)))
    x = _residual_block(_residual_block(x, 16), 32, strides=2)
    outputs = Dense(num_classes, activation="softmax")(GlobalAveragePooling2D()(x))
    return Functional(inputs, outputs)


register_preset("resnet-mini", "a small residual network (graph): stem conv, two basic blocks "
                "(16, 32 filters, the second at half size), global average pooling")(resnet_mini)
