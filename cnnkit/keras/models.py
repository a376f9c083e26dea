"""Keras's models over cnnkit's Sequential: `Sequential` (a list or `.add`), `Model(inputs,
outputs)` for a chain of layers or for seed 004's activation model, `load_model`.

A `cnnkit.keras` model is a cnnkit Sequential (summary, save, plot, `cnnkit.load` all work)
whose compile / fit / evaluate / predict follow Keras: arrays as given, `evaluate` returns
the loss or `[loss, *metrics]`, `predict` needs the batch axis (cnnkit.keras.training).
"""
from __future__ import annotations

from dataclasses import dataclass

from cnnkit.errors import CnnkitError, clipped
from cnnkit.model.sequential import Sequential as _CoreSequential


class KerasTensor:
    """A symbolic tensor: `Input(shape)` and what layers called on it return (the chain of
    layers so far), or a layer's output inside a model (`layer.output`, `model.input`)."""

    def __init__(self, model=None, layer=None, shape=None, chain=(), name=None):
        self.model, self.layer, self.chain, self.name = model, layer, tuple(chain), name
        self._shape = shape

    @classmethod
    def input(cls, shape, name=None):
        return cls(shape=shape, name=name)

    def then(self, layer):
        if self.model is not None:
            raise CnnkitError("calling a layer on a model's layer output is not supported; build "
                              "the chain from keras.Input(...)")
        return KerasTensor(shape=self._shape, chain=self.chain + (layer,), name=self.name)

    @property
    def shape(self):
        if self.model is not None:
            info = self.model.layer_infos()
            out = (self.model.input_shape if self.layer is None
                   else next(i.output_shape for i in info if i.layer is self.layer))
            return (None,) + tuple(out)
        return (None,) + tuple(self._shape)

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}>"


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


class Sequential(_CoreSequential):
    def __init__(self, layers=None, name=None, trainable=True, input_shape=None, init="keras",
                 class_names=None, **kwargs):
        _unknown("Sequential", kwargs, ("layers", "name", "trainable"))
        self.trainable, self.stop_training, self.history = trainable, False, None
        self.compiled_state = None
        self.optimizer = None
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
        return model

    # -- definition ------------------------------------------------------------------------------
    def add(self, layer) -> None:
        if isinstance(layer, KerasTensor):
            if self.layers or layer.chain:
                raise CnnkitError("Input must come first in a Sequential model")
            self.set_input_shape(layer._shape)
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
        if len(shape) == 3:
            from cnnkit.layers import check_input_shape

            self.input_shape = check_input_shape(shape)
        elif len(shape) == 1 and isinstance(shape[0], int) and shape[0] > 0:
            self.input_shape = shape  # vectors (Dense(input_dim=...)): in memory only
        else:
            raise CnnkitError(f"input shape {clipped(shape)} is not understood; valid: "
                              "(height, width, channels), or (features,) for Dense models")
        self._net = None

    def layer_infos(self):
        """cnnkit's rows, with a frozen layer's weights counted as non-trainable, as Keras's
        summary counts them."""
        rows = super().layer_infos()
        for row in rows:
            if not (self.trainable and getattr(row.layer, "trainable", True)):
                row.non_trainable, row.trainable = row.non_trainable + row.trainable, 0
        return rows

    def pop(self):
        layer = self.layers.pop()
        self._net = None
        return layer

    @property
    def input(self):
        self._require_input()
        return KerasTensor(self, None)

    @property
    def output(self):
        return self.layers[-1].output

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

    def __call__(self, x, training=False):
        import torch

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
        return f"<Sequential name={self.name}, built={self.input_shape is not None}>"


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
    """A chain of layers from `keras.Input` (a Sequential), or several layers' outputs of an
    existing model (an activation model whose `predict` returns one array per output)."""
    if kwargs:
        _unknown("Model", kwargs, ("inputs", "outputs", "name"))
    single = not isinstance(outputs, (list, tuple))
    outs = [outputs] if single else list(outputs)
    if not outs or not all(isinstance(t, KerasTensor) for t in outs):
        raise CnnkitError("Model(inputs, outputs) takes keras.Input(...) and the tensors layers "
                          "return, or a model's `input` and its layers' `output`")
    first = inputs[0] if isinstance(inputs, (list, tuple)) and len(inputs) == 1 else inputs
    if all(t.model is not None for t in outs):
        base = outs[0].model
        if any(t.model is not base for t in outs) or not isinstance(first, KerasTensor) \
                or first.model is not base:
            raise CnnkitError("Model(inputs, outputs): inputs must be model.input and outputs its "
                              "own layers' outputs")
        return _ActivationModel(base, [t.layer for t in outs], single)
    if not single:
        raise CnnkitError("Model(inputs, outputs) with several outputs needs them from a built "
                          "model (layer.output); a new model has one output")
    out = outs[0]
    if not isinstance(first, KerasTensor) or first.chain or first._shape != out._shape:
        raise CnnkitError("Model(inputs, outputs): outputs must be computed from inputs by a "
                          "chain of layers (branches are not supported: cnnkit models are "
                          "sequential)")
    return Sequential([first, *out.chain], name=name)


def _as_keras(layer):
    """The cnnkit.keras twin of a cnnkit layer (same arguments, Keras's extras at defaults)."""
    from cnnkit.keras import layers as keras_layers

    twin = getattr(keras_layers, layer.type, None)
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
