"""Keras's models over cnnkit's Sequential: `Sequential` (a list or `.add`), `Model(inputs,
outputs)` for a chain of layers or for seed 004's activation model, `load_model`.

A `cnnkit.keras` model is a cnnkit Sequential (summary, save, plot, `cnnkit.load` all work)
whose compile / fit / evaluate / predict follow Keras: arrays as given, `evaluate` returns
the loss or `[loss, *metrics]`, `predict` needs the batch axis (cnnkit.keras.training).
"""
from __future__ import annotations

from dataclasses import dataclass

from cnnkit.errors import CnnkitError, clipped
from cnnkit.layers.symbolic import Input, Tensor
from cnnkit.model.graph import Functional as _CoreFunctional
from cnnkit.model.sequential import Sequential as _CoreSequential


class KerasTensor(Tensor):
    """Keras's symbolic tensor: cnnkit's, with the batch axis in its shape (`(None, 28, 28, 1)`)."""

    @property
    def shape(self):
        return (None,) + tuple(self._shape)


KerasTensor.result_type = KerasTensor


class KerasInput(Input):
    """`keras.Input(shape)`: what layers called on it return are KerasTensors."""

    result_type = KerasTensor
    shape = KerasTensor.shape


class LayerOutput:
    """A layer's output inside a built model (`layer.output`, `model.input`): what seed 004's
    activation model `Model(model.input, [l.output for l in model.layers])` is made of."""

    def __init__(self, model, layer=None):
        self.model, self.layer = model, layer

    @property
    def shape(self):
        out = (self.model.input_shape if self.layer is None
               else next(i.output_shape for i in self.model.layer_infos() if i.layer is self.layer))
        return (None,) + tuple(out)

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}>"

    def tensor(self):
        """This output as a tensor of the functional API, to build a new model on
        (`x = base.output; ...; Model(base.input, x)`, as keras.io's fine-tuning examples do):
        `model.input` is one Input per model, `model.output` the whole model called on it, so
        the new model holds the base as one nested layer and shares its weights."""
        model = self.model
        if getattr(model, "_extension", None) is None:
            inputs = KerasInput(model._require_input())
            model._extension = (inputs, None)
        inputs, outputs = model._extension
        if self.layer is None:
            return inputs
        if self.layer is not model.layers[-1]:
            raise CnnkitError(f"the output of layer {self.layer.name!r} inside the model "
                              f"{model.name!r} cannot start a new model here; build on the "
                              "model's own output (x = base.output, or x = base(inputs)), or "
                              "read inner layers with Model(base.input, [layer.output, ...])"
                              ".predict(x)")
        if outputs is None:
            from cnnkit.model.graph import nested

            outputs = nested(model, inputs)
            model._extension = (inputs, outputs)
        return outputs


def functional_tensors(x):
    """`x` with a model's `input`/`output` (LayerOutput) turned into functional-API tensors."""
    if isinstance(x, (list, tuple)):
        return type(x)(functional_tensors(t) for t in x)
    return x.tensor() if isinstance(x, LayerOutput) else x


@dataclass
class Compiled:
    optimizer: object
    loss: object
    metrics: list  # [(logged name, accuracy kind)]


FIT_ARGS = ("x", "y", "batch_size", "epochs", "verbose", "callbacks", "validation_split",
            "validation_data", "shuffle", "class_weight", "sample_weight", "initial_epoch",
            "steps_per_epoch", "validation_steps", "validation_batch_size", "validation_freq")
COMPILE_ARGS = ("optimizer", "loss", "loss_weights", "metrics", "weighted_metrics",
                "run_eagerly", "steps_per_execution", "jit_compile", "auto_scale_loss")


def _unknown(call: str, kwargs: dict, valid) -> None:
    if kwargs:
        key = next(iter(kwargs))
        raise CnnkitError(f"{call}() got an unknown argument {key}={clipped(kwargs[key])}; "
                          f"valid: {', '.join(valid)}")


class _Training:
    """A method that is cnnkit.keras.training's function of the same name (its signature,
    checks and Keras's return values), imported on first use: it imports torch, which building
    and summarizing a model do not."""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, model, owner=None):
        from cnnkit.keras import training

        method = getattr(training, self.name)
        return method if model is None else method.__get__(model, owner)


class KerasModel:
    """What Keras's models add to cnnkit's (Sequential and Functional alike): Keras's compile,
    fit, evaluate and predict (cnnkit.keras.training), its weights lists, `input`/`output`."""

    def _keras_init(self, trainable):
        self.trainable, self.stop_training, self.history = trainable, False, None
        self.compiled_state = None
        self.optimizer = None

    def _own_layers(self):
        """Keras's twins of every layer, each knowing its model (for `layer.output`)."""
        self.layers = [_as_keras(layer) for layer in self.layers]
        for layer, name in zip(self.layers, self.layer_names()):
            if layer.name is None:  # Keras names every layer when it is added
                layer.name = name
            layer._model = self

    def layer_infos(self):
        """cnnkit's rows (a frozen layer's weights counted as non-trainable), every row's
        weights non-trainable in a frozen model, as Keras's summary counts them."""
        rows = super().layer_infos()
        for row in rows if not self.trainable else ():
            row.non_trainable, row.trainable = row.non_trainable + row.trainable, 0
        return rows

    @property
    def input(self):
        self._require_input()
        return LayerOutput(self)

    @property
    def output(self):
        return LayerOutput(self, self.layers[-1])

    @property
    def inputs(self):
        return [self.input]

    @property
    def outputs(self):
        return [self.output]

    def get_layer(self, name=None, index=None):
        if index is not None:
            return self.layers[index]
        return super().get_layer(name)

    # -- weights ---------------------------------------------------------------------------------
    def net_weights(self, layer) -> list:
        from cnnkit.model.saving import keras_weights

        name = self.layer_names()[self.layers.index(layer)]
        return keras_weights(self.net.layers[name])

    def get_weights(self) -> list:
        """Keras's flat list of arrays, layer by layer (kernel (kh, kw, in, out), bias, ...)."""
        return [w for layer in self.layers for w in self.net_weights(layer)]

    def set_weights(self, weights) -> None:
        weights = list(weights)
        for layer, name in zip(self.layers, self.layer_names()):
            count = len(self.net_weights(layer))
            if count:
                self.set_layer_weights(name, weights[:count])
                weights = weights[count:]

    def save_weights(self, filepath) -> None:
        from cnnkit.model.keras_writing import save_weights

        save_weights(self, filepath)

    def load_weights(self, filepath) -> None:
        from cnnkit.model.keras_writing import load_weights

        load_weights(self, filepath)

    def penalty(self):
        """The regularizers' loss terms: cnnkit's L2 plus Keras's L1 (regularizers.l1)."""
        total = self.l2_penalty()
        for layer, name in zip(self.layers, self.layer_names()):
            if getattr(layer, "l1_factor", 0.0):
                total = total + layer.l1_factor * sum(
                    p.abs().sum() for k, p in self.net.layers[name].named_parameters()
                    if not k.endswith("bias"))
        return total

    # -- training --------------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        from cnnkit.keras import losses, metrics as metric_names, optimizers

        _unknown("compile", {k: v for k, v in kwargs.items() if k not in COMPILE_ARGS}, COMPILE_ARGS)
        for key in ("loss_weights", "weighted_metrics"):
            if kwargs.get(key) is not None:
                raise CnnkitError(f"compile(): {key} is not supported (one output, one loss)")
        if loss is None:
            raise CnnkitError("compile() needs a loss, e.g. loss='sparse_categorical_crossentropy'")
        self.optimizer, loss = optimizers.get(optimizer), losses.get(loss)
        self.compiled_state = Compiled(self.optimizer, loss, [
            (name, losses.metric_kind(kind, loss)) for name, kind in metric_names.resolve(metrics)])
        # every setting, in TrainConfig's form, as cnnkit.Sequential.compile records it
        self.compiled = {**self.optimizer.train_options(), "loss": self.compiled_state.loss.name}

    def require_compiled(self, call):
        if self.compiled_state is None:
            raise CnnkitError(f"you must call compile() before {call}(): model.compile("
                              "optimizer='adam', loss='sparse_categorical_crossentropy', "
                              "metrics=['accuracy'])")
        return self.compiled_state

    fit, evaluate = _Training(), _Training()

    def predict(self, x, batch_size=None, verbose="auto", steps=None, *, callbacks=None,
                **kwargs):
        from cnnkit.keras import training

        _unknown("predict", kwargs, ("x", "batch_size", "verbose", "steps"))
        return training.predict(self, x, batch_size=batch_size, verbose=verbose, steps=steps)

    # Keras 2's names for the same calls (seed 001 uses them; Keras 3 removed them)
    def fit_generator(self, generator, *args, **kwargs):
        return self.fit(generator, *args, **kwargs)

    def evaluate_generator(self, generator, *args, **kwargs):
        return self.evaluate(generator, *args, **kwargs)

    def predict_generator(self, generator, *args, **kwargs):
        return self.predict(generator, *args, **kwargs)

    def __call__(self, x, training=None):
        import torch

        if isinstance(x, Tensor):  # the functional API: this model as a layer of a graph
            from cnnkit.model.graph import nested

            return nested(self, x, training=training)

        from cnnkit.keras.training import images, nchw

        self.net.train(bool(training))
        with torch.set_grad_enabled(bool(training)):
            y = self.net.outputs(self.net(nchw(images(self, x))))
        return y.permute(0, 2, 3, 1) if y.dim() == 4 else y

    def summary(self, *args, **kwargs):
        kwargs.pop("line_length", None)
        kwargs.pop("expand_nested", None)
        super().summary(*args, **kwargs)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.input_shape is not None}>"


class Sequential(KerasModel, _CoreSequential):
    def __init__(self, layers=None, name=None, trainable=True, input_shape=None, init="keras",
                 class_names=None, **kwargs):
        _unknown("Sequential", kwargs, ("layers", "name", "trainable"))
        self._keras_init(trainable)
        super().__init__(None, input_shape=input_shape, name=name or "sequential", init=init,
                         class_names=class_names)
        for layer in layers or []:
            self.add(layer)

    @classmethod
    def from_config(cls, cfg, where="model"):
        """cnnkit's description (model.json), its layers as cnnkit.keras layers."""
        core = _CoreSequential.from_config(cfg, where)  # every check, every message
        model = cls(name=core.name, init=core.init, class_names=core.class_names,
                    input_shape=core.input_shape)
        for layer in core.layers:
            model.add(_as_keras(layer))
        model.test_time_flip = core.test_time_flip
        model.temperature = core.temperature  # `cnnkit calibrate`'s, applied by predict
        return model

    # -- definition ------------------------------------------------------------------------------
    def add(self, layer) -> None:
        if isinstance(layer, Input):
            if self.layers:
                raise CnnkitError("Input must come first in a Sequential model")
            self.set_input_shape(layer.layer.shape)
            return
        if isinstance(layer, _CoreSequential):  # a model as a layer, shape and all
            super().add(layer)
            return
        layer = _as_keras(layer)
        shape = getattr(layer, "input_shape_arg", None)
        if shape is not None:
            if self.layers:
                raise CnnkitError(f"{layer.type}: input_shape={shape} is only for the first "
                                  f"layer of a model; this is layer {len(self.layers)} (remove "
                                  "it, or start the model with Input(shape))")
            self.set_input_shape(shape)
        super().add(layer)
        if layer.name is None:  # Keras names every layer when it is added
            layer.name = self.layer_names()[-1]
        layer._model = self

    def set_input_shape(self, shape) -> None:
        shape = tuple(shape)
        if len(shape) == 2:  # (28, 28): grayscale images without their channel axis, as
            shape = shape + (1,)  # keras.datasets.mnist gives them; arrays get it added
        if len(shape) == 3:
            from cnnkit.layers import check_input_shape

            self.input_shape = check_input_shape(shape)
        elif len(shape) == 1 and isinstance(shape[0], int) and shape[0] > 0:
            self.input_shape = shape  # vectors (Dense(input_dim=...)): in memory only
        else:
            raise CnnkitError(f"input shape {clipped(shape)} is not understood; valid: "
                              "(height, width, channels), (height, width) for grayscale, or "
                              "(features,) for Dense models")
        self._net = None

    def pop(self):
        layer = self.layers.pop()
        self._net = None
        return layer


class Functional(KerasModel, _CoreFunctional):
    """`keras.Model(inputs, outputs)`: a graph of Keras layers (cnnkit.model.graph)."""

    def __init__(self, inputs=None, outputs=None, name=None, trainable=True, **kwargs):
        self._keras_init(trainable)
        super().__init__(inputs, outputs, name=name or "functional", **kwargs)
        self._own_layers()

    def _setup_from(self, layers, wanted, cfg, where):
        self._keras_init(True)  # before the core's checks, which count weights as Keras does
        super()._setup_from(layers, wanted, cfg, where)

    @classmethod
    def from_config(cls, cfg, where="model"):
        model = super().from_config(cfg, where)
        model._own_layers()
        return model


Sequential.graph_type = Functional


class _ActivationModel:
    """`Model(inputs=model.input, outputs=[l.output for l in model.layers[:8]])`: predict
    returns each named layer's output, as seed 004 draws its feature maps."""

    def __init__(self, base, layers, single):
        self.base, self.output_layers, self.single = base, layers, single
        self.layers = list(base.layers)

    def predict(self, x, batch_size=None, verbose="auto", steps=None):
        from cnnkit.keras import training

        names = [self.base.layer_names()[self.base.layers.index(layer)] for layer in self.output_layers]
        out = training.predict(self.base, x, batch_size=batch_size, verbose=verbose, steps=steps,
                               layers=names)
        return out[0] if self.single else out

    __call__ = predict

    def summary(self, print_fn=None):
        self.base.summary(print_fn=print_fn)


def Model(inputs=None, outputs=None, name=None, **kwargs):
    """`keras.Model(inputs, outputs)`: a graph from `keras.Input` tensors (Functional), or
    several layers' outputs of an existing model (an activation model whose `predict` returns
    one array per output, as seed 004 draws its feature maps)."""
    if kwargs:
        _unknown("Model", kwargs, ("inputs", "outputs", "name", "trainable"))
    single = not isinstance(outputs, (list, tuple))
    outs = [outputs] if single else list(outputs)
    if outs and all(isinstance(t, LayerOutput) for t in outs):
        base = outs[0].model
        first = inputs[0] if isinstance(inputs, (list, tuple)) and len(inputs) == 1 else inputs
        if any(t.model is not base for t in outs) or not isinstance(first, LayerOutput) \
                or first.model is not base:
            raise CnnkitError("Model(inputs, outputs): inputs must be model.input and outputs its "
                              "own layers' outputs")
        return _ActivationModel(base, [t.layer for t in outs], single)
    return Functional(functional_tensors(inputs), functional_tensors(outputs), name=name)


def _as_keras(layer):
    """The cnnkit.keras twin of a cnnkit layer (same arguments, Keras's extras at defaults)."""
    from cnnkit.keras import layers as keras_layers

    twin = keras_layers.GraphInput if layer.type == "InputLayer" else getattr(
        keras_layers, layer.type, None)
    if isinstance(layer, keras_layers.KerasLayer) or not (isinstance(twin, type) and issubclass(twin, type(layer))):
        return layer
    new = twin.__new__(twin)
    new.__dict__.update(layer.__dict__)
    return new


def load_model(filepath, compile=True, custom_objects=None, safe_mode=True):
    """A `.keras` file (Keras 3), an `.h5` file (legacy Keras) or a cnnkit model directory,
    compiled as saved: cnnkit.keras.saving.load_model."""
    from cnnkit.keras import saving

    return saving.load_model(filepath, compile, custom_objects, safe_mode)


def clone_model(model):
    return Sequential.from_config(model.get_config())
