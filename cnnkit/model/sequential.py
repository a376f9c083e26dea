"""Sequential: a Keras-style stack of layer specs, built into a PyTorch module on demand.

The spec (layers + input shape + init style) is the model's single description: it prints the
summary, round-trips through config files, and is saved beside the weights.

Every layer has a unique name, the user's `name=` or Keras's automatic one (`conv2d`,
`conv2d_1`, ...), and owns its weights under it: the built network registers each layer's module
as `layers.<name>`, so saved weights are keyed `layers.conv2d.conv.weight`, and L2, freezing
and Keras-layout weights find a layer's module by its name (`layer_module(name)`).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from cnnkit.errors import CnnkitError, one_of, printable
from cnnkit.layers import (Activation, Input, Layer, MaxPooling2D, Shape, check_input_shape,
                           layer_from_config, layer_to_config)
from cnnkit.layers.base import check_layer_name, check_output_size, check_param_count
from cnnkit.model.provided import provided

INIT_STYLES = ("keras", "torch")
KEYS = ("class_names", "init", "input_shape", "layers", "name", "temperature", "test_time_flip")


def check_temperature(value, where: str = "model") -> float:
    """A calibration temperature (`cnnkit calibrate`): a finite number > 0; 1 changes nothing."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0 < value < float("inf")):
        raise CnnkitError(f"{where}: temperature must be a finite number > 0; got {value!r}")
    return float(value)


def check_description(cfg, where: str, keys, what: str) -> None:
    """A model description is a mapping of known keys with a non-empty list of `layers`."""
    if not isinstance(cfg, dict):
        raise CnnkitError(f"{where}: expected a mapping with {what}; received "
                          f"{type(cfg).__name__}")
    unknown = sorted(map(str, set(cfg) - set(keys)))
    if unknown:  # (keys as text: YAML allows numbers and nulls as keys, which do not sort)
        from cnnkit.errors import shown

        raise CnnkitError(f"{where}: unknown key {shown(unknown[0])}; valid: "
                          f"{', '.join(sorted(keys))}")
    if "layers" not in cfg:
        raise CnnkitError(f"{where}: missing key 'layers'")
    if not isinstance(cfg["layers"], list) or not cfg["layers"]:
        raise CnnkitError(f"{where}: 'layers' must be a non-empty list")


@dataclass
class LayerInfo:
    """One summary row: a layer with the shapes around it."""

    name: str
    layer: Layer
    input_shape: Shape
    output_shape: Shape
    trainable: int
    non_trainable: int
    macs: int
    inbound: list = field(default_factory=list)  # a graph's: the names of the layers it takes

    @property
    def params(self) -> int:
        return self.trainable + self.non_trainable


def layer_row(layer: Layer, name: str, shape, total: int, inbound=()) -> LayerInfo:
    """`layer`'s summary row for input `shape` (a list of shapes for a merge layer), its
    parameters bringing the model's to more than `total`. Sizes that cannot be allocated are
    refused here, from the arithmetic: before a custom layer's default params() builds its
    module, and before any build. A layer set `trainable = False` counts its weights as
    non-trainable, as Keras's summary does (and as training treats them)."""
    out = layer.output_shape(shape)
    check_output_size(layer, out)
    trainable, frozen = layer.params(shape)
    if getattr(layer, "trainable", True) is False:
        trainable, frozen = 0, frozen + trainable
    check_param_count(layer, trainable + frozen, total + trainable + frozen)
    return LayerInfo(name, layer, shape, out, trainable, frozen, layer.macs(shape, out),
                     list(inbound))


def _is_monotonic(module) -> bool:
    """Element-wise and non-decreasing, so it commutes with max-pooling."""
    from torch import nn

    return isinstance(module, (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Sigmoid, nn.Tanh, nn.Softplus))


class Sequential:
    def __init__(self, layers=None, input_shape=None, name: str = "sequential",
                 init: str = "keras", class_names: list[str] | None = None):
        if init not in INIT_STYLES:
            raise CnnkitError(f"unknown init {init!r}; valid: {', '.join(INIT_STYLES)}")
        # a name from a file is shown in summaries, reports and pages: made safe here, once
        self.name, self.init = printable(name) if isinstance(name, str) else name, init
        self.input_shape = None if input_shape is None else check_input_shape(input_shape)
        self.layers: list[Layer] = []
        self.class_names = list(class_names) if class_names else None
        self.preprocessing = {"normalize": "unit"}  # uint8 pixels / 255, as the seeds scale
        self.dataset: str | None = None  # what it was trained on, for `cnnkit evaluate`
        self._net = None
        self._test_time_flip = False
        # logits / temperature before the output activation (predict, evaluate, serve, ONNX):
        # what `cnnkit calibrate` fits; 1 changes nothing
        self.temperature = 1.0
        self.compiled: dict | None = None
        for layer in layers or []:
            self.add(layer)

    # -- definition --------------------------------------------------------------------------
    def add(self, layer) -> None:
        if isinstance(layer, Input):
            if self.layers:
                raise CnnkitError("Input must come first in a Sequential model")
            self.input_shape = layer.layer.shape
            return
        if isinstance(layer, Sequential):  # a model as a layer (cnnkit.model.graph.Nested)
            from cnnkit.model.graph import Nested

            layer = Nested(layer)
            if not self.layers and self.input_shape is None:
                self.input_shape = tuple(layer.model.input_shape)
        if not isinstance(layer, Layer):
            raise CnnkitError(f"not a cnnkit layer: {layer!r}")
        self.layers.append(layer)
        try:
            self.layer_names()  # a name already taken fails here, at the layer that takes it
        except CnnkitError:
            self.layers.pop()
            raise
        self._net = None

    def set_input_shape(self, shape) -> None:
        """Give a model built without an input shape its input (H, W, C), as Keras builds a
        model on the first tensor it is called on."""
        self.input_shape = check_input_shape(shape)
        self._net = None

    def _require_input(self) -> tuple[int, int, int]:
        if self.input_shape is None:
            raise CnnkitError("the model has no input shape: start with Input((H, W, C)) or pass "
                              "input_shape=(H, W, C)")
        return self.input_shape

    def layer_names(self) -> list[str]:
        """Each layer's name: its own `name=`, or Keras's `conv2d`, `conv2d_1`, ... by type."""
        counts: Counter = Counter()
        names: dict[str, int] = {}
        for i, layer in enumerate(self.layers):
            base = layer.base_name
            name = check_layer_name(layer.name) or (base if counts[base] == 0
                                                    else f"{base}_{counts[base]}")
            counts[base] += 1
            if name in names:
                raise CnnkitError(f"layers[{i}]: the layer name {name!r} is already layers"
                                  f"[{names[name]}]'s; each layer needs a name of its own "
                                  "(its weights are saved under it): pass another name=")
            names[name] = i
        return list(names)

    def layer_infos(self) -> list[LayerInfo]:
        """Shape inference through every layer (raises a clear error at the first bad one)."""
        shape: Shape = self._require_input()
        rows, total = [], 0
        for i, (layer, name) in enumerate(zip(self.layers, self.layer_names())):
            try:
                rows.append(layer_row(layer, name, shape, total))
            except CnnkitError as e:
                raise CnnkitError(f"layers[{i}] {e}") from None
            shape, total = rows[-1].output_shape, total + rows[-1].params
        return rows

    @property
    def output_shape(self) -> Shape:
        infos = self.layer_infos()
        return infos[-1].output_shape if infos else self._require_input()

    def count_params(self) -> int:
        return sum(r.params for r in self.layer_infos())

    @property
    def output_activation(self) -> str | None:
        """The last layer's softmax/sigmoid, which the engine splits off (losses use logits)."""
        if not self.layers:
            return None
        last = self.layers[-1]
        act = last.activation if isinstance(last, Activation) else last.fused_activation()
        return act if act in ("softmax", "sigmoid") else None

    @property
    def num_classes(self) -> int:
        """The classes the output stands for: its units, or 2 for one sigmoid unit."""
        from cnnkit.model.outputs import class_count

        return class_count(self.output_shape[0])

    def check_classifier(self) -> None:
        """A classifier must end with one vector per image; say how to get there if not."""
        out = self.output_shape
        if len(out) != 1:
            raise CnnkitError(f"the model's output has shape {out}, not one vector per image; add "
                              "Flatten or GlobalAveragePooling2D before the last Dense layer")

    # -- engine ------------------------------------------------------------------------------
    def build(self):
        """Create the PyTorch module (NCHW inside). Returns it; also kept as `self.net`."""
        import torch
        from torch import nn

        from cnnkit.layers.nn import Net, activation_module

        infos = self.layer_infos()
        out_act = self.output_activation
        reserved = nn.ModuleDict()  # an empty one: its attributes are the names torch refuses
        modules, activations, steps = {}, {}, []  # by layer name; the order they run in
        for i, info in enumerate(infos):
            layer, name = info.layer, info.name
            if hasattr(reserved, name):
                raise CnnkitError(f"layers[{i}]: the layer name {name!r} is taken by PyTorch "
                                  "(a module attribute, like 'eval' or 'keys'); pass another name=")
            split = i == len(infos) - 1 and out_act is not None  # becomes output_activation
            module = None if split and isinstance(layer, Activation) else layer.build(
                info.input_shape, self.init)
            if module is not None and not isinstance(module, nn.Module):
                raise CnnkitError(f"{layer.type}.build must return one torch module (or None); "
                                  f"received {type(module).__name__}")
            modules[name] = nn.Identity() if module is None else module
            if module is None:
                pass
            elif isinstance(layer, MaxPooling2D) and steps and _is_monotonic(steps[-1]):
                # max(f(a), f(b)) = f(max(a, b)) for a non-decreasing f: pool first, then apply
                # the activation to 4× fewer values. Same outputs and gradients, ~30% faster
                # training steps for the seed models on a CPU (bench/README.md).
                steps.insert(-1, module)
            else:
                steps.append(module)
            fused = layer.fused_activation()
            if fused != "linear" and not split:
                activations[name] = activation_module(fused)
                steps.append(activations[name])
        # channels_last: the layout the CPU conv kernels are fastest in, for training and
        # for single images alike (NCHW weights fall back to a slow im2col path there)
        self._net = Net(modules, activations, steps, out_act).to(memory_format=torch.channels_last)
        self._net.output_shape = infos[-1].output_shape if infos else self._require_input()
        self._net.flip_average = self._test_time_flip
        return self._net

    @property
    def test_time_flip(self) -> bool:
        """Predict from the average of each image's logits and its mirror image's (eval mode
        only). For data whose classes do not change when mirrored, such as clothing."""
        return self._test_time_flip

    @test_time_flip.setter
    def test_time_flip(self, on: bool) -> None:
        if not isinstance(on, bool):
            raise CnnkitError(f"test_time_flip must be true or false; got {on!r}")
        if on:
            self.check_classifier()
        self._test_time_flip = on
        if self._net is not None:
            self._net.flip_average = on

    @property
    def net(self):
        if self._net is None:
            self.build()
        return self._net

    def get_layer(self, name: str) -> Layer:
        """The layer spec called `name` (see `layer_names()`), as Keras's `get_layer`."""
        names = self.layer_names()
        if name not in names:
            raise one_of("layer name", name, names)
        return self.layers[names.index(name)]

    def layer_module(self, name: str):
        """The torch module that layer `name` built, holding its weights (`layers.<name>.*`)."""
        self.get_layer(name)  # a clear error for a name the model does not have
        return self.net.layers[name]

    def l2_penalty(self):
        """Sum of l2 · ||kernel||² over layers with kernel_regularizer (Keras's L2): every
        parameter of the layer's module except its biases."""
        import torch

        terms = []
        for layer, name in zip(self.layers, self.layer_names()):
            if layer.l2():
                kernels = [p for key, p in self.net.layers[name].named_parameters()
                           if not key.endswith("bias")]
                terms += [layer.l2() * p.pow(2).sum() for p in kernels]
        return torch.stack(terms).sum() if terms else torch.zeros(())

    def _weighted_names(self) -> list[str]:
        """The layers whose modules hold weights (parameters or buffers), in order."""
        return [name for name, module in self.net.layers.items() if module.state_dict()]

    def get_weights(self) -> list[list]:
        """Per layer with weights, Keras layout as numpy: kernel (kh, kw, in, out) / (in, out)."""
        from cnnkit.model.saving import keras_weights

        return [keras_weights(self.net.layers[name]) for name in self._weighted_names()]

    def set_layer_weights(self, layer: int | str, weights: list) -> None:
        """Set a layer, by its index in `self.layers` or its name, from Keras-layout arrays:
        [kernel, bias] for Conv2D and Dense."""
        from cnnkit.model.saving import set_keras_weights

        names = self.layer_names()
        if isinstance(layer, int) and not isinstance(layer, bool):
            if not -len(names) <= layer < len(names):
                raise CnnkitError(f"layer index {layer} is out of range; valid: 0 to {len(names) - 1}")
            name = names[layer]
        else:
            name = layer
        spec = self.get_layer(name)
        if name not in self._weighted_names():
            raise CnnkitError(f"layer {name!r} ({spec.type}) has no weights")
        set_keras_weights(self.net.layers[name], weights, spec)

    def __call__(self, x):
        """Run the whole model (last activation included) on NHWC input; returns NHWC/vectors.

        For the worked examples and parity checks: arrays in, arrays out, no preprocessing."""
        from cnnkit.layers.symbolic import Tensor

        if isinstance(x, Tensor):  # the functional API: this model as one layer of a graph
            from cnnkit.model.graph import nested

            return nested(self, x)
        import numpy as np
        import torch

        t = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        single = t.dim() == 3
        t = (t[None] if single else t).permute(0, 3, 1, 2)
        self.net.eval()
        with torch.inference_mode():
            y = self.net.outputs(self.net(t))
        y = y.permute(0, 2, 3, 1) if y.dim() == 4 else y
        return (y[0] if single else y).numpy()

    # -- description -------------------------------------------------------------------------
    def get_config(self) -> dict:
        cfg = {"name": self.name, "input_shape": list(self._require_input()), "init": self.init,
               "layers": [layer_to_config(layer) for layer in self.layers]}
        if self._test_time_flip:
            cfg["test_time_flip"] = True
        if self.temperature != 1.0:
            cfg["temperature"] = self.temperature
        return cfg

    @classmethod
    def from_config(cls, cfg: dict, where: str = "model") -> "Sequential":
        check_description(cfg, where, KEYS, "input_shape and layers")
        if "input_shape" not in cfg:
            raise CnnkitError(f"{where}: missing key 'input_shape'")
        try:
            shape = check_input_shape(cfg["input_shape"])
        except CnnkitError as e:
            raise CnnkitError(f"{where}: input_shape: {e}") from None
        layers = [layer_from_config(entry, f"{where}: layers[{i}]")
                  for i, entry in enumerate(cfg["layers"])]
        model = cls(layers, input_shape=shape, name=cfg.get("name", "sequential"),
                    init=cfg.get("init", "keras"), class_names=cfg.get("class_names"))
        try:  # shape inference now, so a bad model fails at load, not later
            model.layer_infos()
            model.test_time_flip = cfg.get("test_time_flip", False)
            model.temperature = check_temperature(cfg.get("temperature", 1.0))
        except CnnkitError as e:
            raise CnnkitError(f"{where}: {e}") from None
        return model

    # -- reports -----------------------------------------------------------------------------
    def summary(self, explain: bool = False, print_fn=None, show_trainable: bool = False) -> None:
        from cnnkit.model.summary import print_summary

        print_summary(self, explain=explain, print_fn=print_fn, show_trainable=show_trainable)

    def summary_dict(self) -> dict:
        from cnnkit.model.summary import summary_dict

        return summary_dict(self)

    def plot(self, path):
        """Draw the layers to `path` (.svg or .png), as Keras's plot_model(show_shapes=True).
        Returns the file as a Picture: a Path that a notebook shows as the diagram."""
        return provided("plot_model")(self, path)  # cnnkit.look.diagram

    # -- saving ------------------------------------------------------------------------------
    def save(self, path) -> None:
        from cnnkit.model.saving import save_model

        save_model(self, path)

    # -- training (cnnkit.train, provided: cnnkit.model.provided) --------------------------------
    def compile(self, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=None,
                **options) -> None:
        """Remember training choices, as Keras's compile does; `fit` uses them. Each is
        checked here (TrainConfig's names and ranges), so a typo fails at this call, not in fit.
        An optimizer may be a name in any case ('Adam') or an optimizer object
        (cnnkit.keras.optimizers.SGD(learning_rate=0.05, momentum=0.9)): every setting it holds
        is kept, by TrainConfig's names (lr, momentum, nesterov, weight_decay) and the rest in
        `optimizer_options`."""
        if hasattr(optimizer, "train_options"):  # an object of cnnkit's optimizer registry
            settings = optimizer.train_options()
            optimizer = settings.pop("optimizer")
            options = {**settings, **options}  # compile's own keywords win
        if isinstance(optimizer, str):
            optimizer = optimizer.lower()
        settings = {"optimizer": optimizer, "loss": loss, **options}
        provided("TrainConfig").from_dict(settings)  # cnnkit.train.config
        self.compiled = settings

    def fit(self, *args, **kwargs):
        """cnnkit.train.api.fit on this model: the one training loop."""
        return provided("fit")(self, *args, **kwargs)

    def evaluate(self, *args, **kwargs):
        """cnnkit.train.api.evaluate on this model."""
        return provided("evaluate")(self, *args, **kwargs)

    def predict(self, x, batch_size: int = 256):
        from cnnkit.model.predict import predict_proba

        return predict_proba(self, x, batch_size=batch_size)

    def feature_maps(self, image, layers=None) -> dict:
        """{layer name: its output for one image}, (H, W, C) or (D,), as seed 004's
        `Model(inputs, [l.output for l in model.layers])` gives them (cnnkit.look.inside)."""
        return provided("feature_maps")(self, image, layers)

    def layer_output(self, name: str, image):
        """Layer `name`'s output for one image: Keras's `get_layer(name).output`, computed."""
        return self.feature_maps(image, [name])[name]

    def __repr__(self):
        return f"Sequential(name={self.name!r}, layers={len(self.layers)}, input_shape={self.input_shape})"
