"""Keras's layer names and arguments over cnnkit's layer specs: `layers.Conv2D(32, 3,
activation="relu", input_shape=(28, 28, 1))` as the seeds write it.

Each class here is cnnkit's own layer (same shape inference, summary, weights and saved
config) plus what Keras's layers also take: `input_shape=` (or `input_dim=` for Dense) on the
first layer of a model, `name=` (an empty name means Keras's automatic one), `trainable=`,
`dtype="float32"`, Keras's regularizer objects, and Keras's defaults where they differ from
cnnkit's (LeakyReLU's slope 0.3). An argument neither knows is one CnnkitError naming it.
A layer also works on a symbolic tensor (`Conv2D(8, 3)(inputs)`) for Keras's functional API,
and `layer.output` names its output in a model (seed 004's activation model).
"""
from __future__ import annotations

import inspect

from cnnkit.errors import CnnkitError
from cnnkit.layers import Layer, core, preprocessing
from cnnkit.layers import symbolic
from cnnkit.layers import conv, elementwise, merge, shape  # modern CNN layers (issue 27)
from cnnkit.errors import clipped
from cnnkit.model.keras_files import DEFAULTS, FIXED, RENAMED, keras_arguments

COMMON = ("input_shape", "batch_input_shape", "batch_size", "name", "trainable", "dtype")


class KerasLayer:
    """The Keras side of a layer. Mixed in before cnnkit's layer class."""

    trainable = True
    input_shape_arg = None  # the `input_shape=` it was given, for the model's first layer
    l1_factor = 0.0  # kernel L1 (regularizers.l1 / l1_l2); cnnkit's core layers know L2 only
    _model = None  # the Sequential it was added to (for `layer.output`)

    def __init__(self, *args, **kwargs):
        self._keras_init(args, kwargs)

    def _keras_init(self, args, kwargs):
        """Check `kwargs` against cnnkit's arguments and Keras's common ones, then build the
        cnnkit layer. Returns nothing; raises one line naming an unknown argument."""
        # cnnkit's layer: the first class of the mro defined in cnnkit.layers (core, conv, ...)
        base = next(c for c in type(self).__mro__
                    if c.__module__.startswith("cnnkit.layers.") and issubclass(c, Layer))
        params = [p for p in inspect.signature(base.__init__).parameters if p != "self"]
        kind = next(c for c in type(self).__mro__ if c.__module__ == __name__).__name__
        kwargs = keras_arguments(kind, kwargs, type(self).__name__)
        initializers = [p for p in params if p.endswith("_initializer")]
        if initializers:  # Conv2D, Dense, DepthwiseConv2D, ...: Keras's initializers
            bias = kwargs.pop("bias_initializer", "zeros")
            if bias not in ("zeros", "Zeros"):
                raise CnnkitError(f"{type(self).__name__}: bias_initializer={clipped(bias)} is "
                                  "not supported; valid: 'zeros'")
            for key in initializers:
                if key in kwargs:
                    kwargs[key] = _initializer(kwargs[key])
        for key, value in DEFAULTS.get(kind, {}).items():
            if key not in params[:len(args)]:
                kwargs.setdefault(key, value)
        extra = {k: kwargs.pop(k) for k in list(kwargs) if k in COMMON or k == "input_dim"}
        unknown = [k for k in kwargs if k not in params]
        if unknown:
            valid = sorted(set(params) | set(COMMON) | set(FIXED.get(kind, {}))
                           | set(RENAMED.get(kind, {})))
            raise CnnkitError(f"{type(self).__name__}: unknown argument {unknown[0]}="
                              f"{clipped(kwargs[unknown[0]])}; valid: {', '.join(valid)}")
        if len(args) > len(params):
            raise CnnkitError(f"{type(self).__name__} takes at most {len(params)} positional "
                              f"arguments ({', '.join(params)}); received {len(args)}")
        for key in ("kernel_regularizer",):
            if key in kwargs:
                kwargs[key] = self._regularizer(kwargs[key])
        name = extra.get("name")
        kwargs["name"] = name or None  # Keras: an empty name is an automatic one
        try:
            base.__init__(self, *args, **kwargs)
        except TypeError as e:  # a required argument missing, or given twice
            raise CnnkitError(f"{type(self).__name__}: {e}") from None
        dtype = extra.get("dtype")
        if dtype not in (None, "float32"):
            raise CnnkitError(f"{type(self).__name__}: dtype={clipped(dtype)} is not supported; "
                              "valid: 'float32'")
        self.trainable = extra.get("trainable", True)
        if not isinstance(self.trainable, bool):
            raise CnnkitError(f"{type(self).__name__}: trainable must be True or False; received "
                              f"trainable={clipped(self.trainable)}")
        shape = extra.get("input_shape")
        if "batch_input_shape" in extra:
            shape = tuple(extra["batch_input_shape"])[1:]
        if "input_dim" in extra:
            shape = (extra["input_dim"],)
        self.input_shape_arg = None if shape is None else tuple(shape)

    def _regularizer(self, value):
        from cnnkit.keras.regularizers import Regularizer

        if isinstance(value, Regularizer):
            self.l1_factor = value.l1
            return value.l2 or None
        if value == "l1":
            self.l1_factor = 0.01
            return None
        return value

    # -- functional API: calling a layer on a tensor is cnnkit.layers.Layer's __call__ ---------
    def __call__(self, inputs, training=None):
        from cnnkit.keras.models import functional_tensors

        if training is not None:  # Keras fixes the mode of this one call
            raise CnnkitError(f"{type(self).__name__}: training={clipped(training)} on a layer's "
                              "call is not supported; valid: a model's call, "
                              "keras.Sequential([layer])(x, training=...)")
        return super().__call__(functional_tensors(inputs))  # `base.output` is a tensor too

    @property
    def output(self):
        from cnnkit.keras.models import LayerOutput

        if self._model is None:
            raise CnnkitError(f"layer {self.name!r} is not in a model yet; add it to a "
                              "Sequential first")
        return LayerOutput(self._model, self)

    def get_weights(self):
        return self._model_required().net_weights(self)

    def set_weights(self, weights):
        self._model_required().set_layer_weights(self.name, weights)

    def count_params(self) -> int:
        model = self._model_required()
        return next(i.params for i in model.layer_infos() if i.layer is self)

    def _model_required(self):
        if self._model is None:
            raise CnnkitError(f"layer {type(self).__name__} is not in a model yet; its weights "
                              "exist once it is added to a Sequential")
        return self._model


def _initializer(value):
    """Keras's initializer names (and 'GlorotUniform' class spellings) as cnnkit's."""
    if value is None:
        return None
    names = {"glorotuniform": "glorot_uniform", "glorotnormal": "glorot_normal",
             "heuniform": "he_uniform", "henormal": "he_normal", "lecununiform": "lecun_uniform",
             "lecunnormal": "lecun_normal", "zeros": "zeros"}
    if isinstance(value, str):
        return names.get(value.replace("_", "").lower(), value)
    return value


class Conv2D(KerasLayer, core.Conv2D):
    pass


class Dense(KerasLayer, core.Dense):
    pass


class MaxPooling2D(KerasLayer, core.MaxPooling2D):
    pass


class AveragePooling2D(KerasLayer, core.AveragePooling2D):
    pass


class ZeroPadding2D(KerasLayer, core.ZeroPadding2D):
    pass


class Flatten(KerasLayer, core.Flatten):
    pass


class GlobalAveragePooling2D(KerasLayer, core.GlobalAveragePooling2D):
    pass


class Dropout(KerasLayer, core.Dropout):
    def __init__(self, *args, seed=None, **kwargs):  # seed: cnnkit's run seed decides
        self._keras_init(args, kwargs)


class BatchNormalization(KerasLayer, core.BatchNormalization):
    pass


class Activation(KerasLayer, core.Activation):
    pass


class LeakyReLU(KerasLayer, core.LeakyReLU):
    """Keras 3's LeakyReLU: slope 0.3 by default (`alpha=` is Keras 2's name for it)."""


class Softmax(KerasLayer, core.Activation):
    type = "Activation"

    def __init__(self, axis=-1, **kwargs):
        self._keras_init(("softmax",), {"axis": axis, **kwargs})


# -- modern CNN layers (issue 27) --
class ReLU(KerasLayer, elementwise.ReLU):
    """Keras's ReLU layer (max_value, negative_slope, threshold), a layer type of its own;
    models saved when it was Activation('relu') load as they were."""


class DepthwiseConv2D(KerasLayer, conv.DepthwiseConv2D):
    pass


class SeparableConv2D(KerasLayer, conv.SeparableConv2D):
    pass


class SpatialDropout2D(KerasLayer, elementwise.SpatialDropout2D):
    def __init__(self, *args, seed=None, **kwargs):  # seed: cnnkit's run seed decides
        self._keras_init(args, kwargs)


class GlobalMaxPooling2D(KerasLayer, shape.GlobalMaxPooling2D):
    pass


class Reshape(KerasLayer, shape.Reshape):
    pass


class Add(KerasLayer, merge.Add):
    pass


class Subtract(KerasLayer, merge.Subtract):
    pass


class Multiply(KerasLayer, merge.Multiply):
    pass


class Average(KerasLayer, merge.Average):
    pass


class Maximum(KerasLayer, merge.Maximum):
    pass


class Minimum(KerasLayer, merge.Minimum):
    pass


class Concatenate(KerasLayer, merge.Concatenate):
    pass


# Keras's functional forms of the merge layers: `layers.add([x, residual])` is
# `layers.Add()([x, residual])`, as keras.io's and Deep Learning with Python's residual blocks
# write it (on the tensors of the functional API)
def add(inputs, **kwargs):
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    return Minimum(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    return Concatenate(axis=axis, **kwargs)(inputs)


MODERN = ["DepthwiseConv2D", "SeparableConv2D", "SpatialDropout2D", "GlobalMaxPooling2D",
          "Reshape", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"]
SeparableConvolution2D, GlobalMaxPool2D = SeparableConv2D, GlobalMaxPooling2D


def Input(shape=None, batch_size=None, name=None, dtype=None, batch_shape=None):
    """A symbolic input, as `keras.Input`: start a Sequential with it, or call layers on it."""
    from cnnkit.keras.models import KerasInput

    if shape is None and batch_shape is not None:
        shape = tuple(batch_shape)[1:]
    if shape is None:
        raise CnnkitError("Input needs shape=(height, width, channels)")
    return KerasInput(tuple(shape), name)


InputLayer = Input


class GraphInput(KerasLayer, symbolic.InputLayer):
    """A graph model's input layer as `model.layers[0]` shows it: with Keras's `output`
    (`[layer.output.shape for layer in model.layers]`, DLwP's way to read a graph)."""

    type = "InputLayer"


# -- preprocessing and augmentation layers (issue 27) --
class Rescaling(KerasLayer, preprocessing.Rescaling):
    pass


class Normalization(KerasLayer, preprocessing.Normalization):
    pass


class Resizing(KerasLayer, preprocessing.Resizing):
    pass


class RandomFlip(KerasLayer, preprocessing.RandomFlip):
    pass


class RandomRotation(KerasLayer, preprocessing.RandomRotation):
    pass


class RandomZoom(KerasLayer, preprocessing.RandomZoom):
    pass


class RandomTranslation(KerasLayer, preprocessing.RandomTranslation):
    pass


class RandomContrast(KerasLayer, preprocessing.RandomContrast):
    pass


_PREPROCESSING = ["Rescaling", "Normalization", "Resizing", "RandomFlip", "RandomRotation",
                         "RandomZoom", "RandomTranslation", "RandomContrast"]

__all__ = ["Input", "InputLayer", "Conv2D", "Dense", "MaxPooling2D", "AveragePooling2D",
           "ZeroPadding2D", "Flatten", "GlobalAveragePooling2D", "Dropout", "BatchNormalization",
           "Activation", "LeakyReLU", "ReLU", "Softmax", *_PREPROCESSING] + MODERN + [
           "add", "subtract", "multiply", "average", "maximum", "minimum", "concatenate"]
MaxPool2D, AvgPool2D, Convolution2D = MaxPooling2D, AveragePooling2D, Conv2D
