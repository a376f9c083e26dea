"""Graph models: Keras's functional API over cnnkit's layers.

    inputs = Input((64, 64, 3))
    x = Conv2D(16, 3, padding="same", activation="relu")(inputs)
    y = Conv2D(16, 3, padding="same")(x)
    outputs = Dense(10, activation="softmax")(GlobalAveragePooling2D()(Add()([x, y])))
    model = Functional(inputs, outputs)          # cnnkit.Model(inputs, outputs)

A Functional is a Sequential whose layers (input layers included, as Keras lists them) each
name the layers they take: `inbound[i]` holds the indices of layer i's inputs, earlier in
the list. Everything that reads a Sequential through the model contract (summary, training,
saving, export) reads a Functional the same way; what differs is here: tracing the graph, its
shape inference, the built network (cnnkit.layers.graphnet.GraphNet) and its description, where each
layer entry may name its `inputs` (the previous layer when it does not):

    {"name": "tiny", "outputs": ["dense"], "layers": [
        {"InputLayer": {"shape": [64, 64, 3], "name": "image"}},
        {"Conv2D": {"filters": 16, "kernel_size": 3, "name": "c1"}},
        {"Conv2D": {"filters": 16, "kernel_size": 1, "name": "c2", "inputs": ["image"]}},
        ...]}
"""
from __future__ import annotations

from cnnkit.errors import CnnkitError, clipped
from cnnkit.layers import LAYER_TYPES, Activation, Layer, layer_from_config, layer_to_config
from cnnkit.layers.symbolic import InputLayer, Tensor
from cnnkit.model.sequential import (LayerInfo, Sequential, check_description, check_temperature,
                                     layer_row)

KEYS = ("name", "init", "layers", "outputs", "class_names", "temperature", "test_time_flip",
        "input_shape")


def _trace(inputs: list, output) -> list[Tensor]:
    """Every tensor `output` depends on, in creation order (a topological order); each must
    come from `inputs`."""
    seen, stack = {}, [output]
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen[id(t)] = t
        if isinstance(t.layer, InputLayer):
            if not any(t is i for i in inputs):
                raise CnnkitError(f"Model(inputs, outputs): the output depends on the input "
                                  f"{t.layer.name or 'input_layer'!r} {t.shape}, which is not "
                                  "in inputs; pass every Input the outputs are computed from")
        stack.extend(t.inbound)
    unused = [i for i in inputs if id(i) not in seen]
    if unused:
        raise CnnkitError(f"Model(inputs, outputs): the input {unused[0].shape} does not reach "
                          "the output; remove it from inputs or use it")
    return sorted(seen.values(), key=lambda t: t.order)


class Functional(Sequential):
    """A graph of layers from `inputs` (Input tensors) to one `outputs` tensor."""

    def __init__(self, inputs=None, outputs=None, name: str = "functional", init: str = "keras",
                 class_names=None):
        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if isinstance(outputs, (list, tuple)):
            if len(outputs) != 1:
                raise CnnkitError(f"Model(inputs, outputs): a classifier has one output; "
                                  f"received {len(outputs)}")
            outputs = outputs[0]
        if not isinstance(outputs, Tensor) or not all(
                isinstance(t, Tensor) and isinstance(t.layer, InputLayer) for t in inputs):
            raise CnnkitError("Model(inputs, outputs) takes Input(...) tensors and the tensor "
                              "the last layer returns: x = Input((28, 28, 1)); y = "
                              "Dense(10)(Flatten()(x)); Model(x, y)")
        tensors = _trace(inputs, outputs)
        index = {id(t): i for i, t in enumerate(tensors)}
        self._setup([t.layer for t in tensors],
                    [[index[id(s)] for s in t.inbound] for t in tensors],
                    [index[id(t)] for t in inputs], name, init, class_names)

    def _setup(self, layers, inbound, inputs, name, init, class_names):
        first = layers[inputs[0]]
        super().__init__(None, input_shape=None, name=name, init=init, class_names=class_names)
        self.layers, self.inbound, self.input_indices = list(layers), inbound, list(inputs)
        self.input_shape = first.shape  # the first input's (H, W, C), or (D,)
        self.layer_names()  # names checked now: each layer's own, or Keras's automatic one

    def add(self, layer) -> None:
        raise CnnkitError("a graph model's layers come from its inputs and outputs: call the "
                          "new layer on model.output and build a new Model, or use Sequential")

    @property
    def input_shapes(self) -> list:
        return [self.layers[i].shape for i in self.input_indices]

    def layer_infos(self) -> list[LayerInfo]:
        names, rows, total = self.layer_names(), [], 0
        outs: list = []
        for i, (layer, name) in enumerate(zip(self.layers, names)):
            shapes = [outs[j] for j in self.inbound[i]]
            shape = layer.shape if isinstance(layer, InputLayer) else (
                shapes if layer.merges else shapes[0])
            try:
                rows.append(layer_row(layer, name, shape, total,
                                      [names[j] for j in self.inbound[i]]))
            except CnnkitError as e:
                raise CnnkitError(f"layer {name!r}: {e}") from None
            outs.append(rows[-1].output_shape)
            total += rows[-1].params
        return rows

    @property
    def output_shape(self):
        return self.layer_infos()[-1].output_shape

    def check_classifier(self) -> None:
        """A classifier of images: one input (what cnnkit's data, training, evaluation and
        serving feed), one vector per image out."""
        if len(self.input_indices) > 1:
            raise CnnkitError(f"this graph takes {len(self.input_indices)} inputs "
                              f"{self.input_shapes}; cnnkit trains, evaluates and serves "
                              "models of one image input: build, summarize and plot it, or "
                              "give it one Input")
        super().check_classifier()

    @property
    def output_activation(self) -> str | None:
        last = self.layers[-1]
        act = last.activation if isinstance(last, Activation) else last.fused_activation()
        return act if act in ("softmax", "sigmoid") else None

    def build(self):
        import torch
        from torch import nn

        from cnnkit.layers.graphnet import GraphNet
        from cnnkit.layers.nn import activation_module

        infos, out_act = self.layer_infos(), self.output_activation
        reserved = nn.ModuleDict()
        modules, activations, program = {}, {}, []
        for i, info in enumerate(infos):
            layer, name = info.layer, info.name
            if hasattr(reserved, name):
                raise CnnkitError(f"layer {name!r}: the name is taken by PyTorch (a module "
                                  "attribute, like 'eval' or 'keys'); pass another name=")
            split = i == len(infos) - 1 and out_act is not None
            module = None if isinstance(layer, InputLayer) or (
                split and isinstance(layer, Activation)) else layer.build(info.input_shape, self.init)
            if module is not None and not isinstance(module, nn.Module):
                raise CnnkitError(f"{layer.type}.build must return one torch module (or None); "
                                  f"received {type(module).__name__}")
            modules[name] = nn.Identity() if module is None else module
            fused = layer.fused_activation()
            if fused != "linear" and not split:
                activations[name] = activation_module(fused)
            if not isinstance(layer, InputLayer):
                program.append((i, self.inbound[i]))
        self._net = GraphNet(modules, activations, program, self.input_indices, len(infos) - 1,
                             out_act).to(memory_format=torch.channels_last)
        self._net.output_shape = infos[-1].output_shape
        self._net.flip_average = self._test_time_flip
        return self._net

    # -- description -------------------------------------------------------------------------
    def get_config(self) -> dict:
        names = self.layer_names()
        entries = []
        for i, layer in enumerate(self.layers):
            entry = layer_to_config(layer)
            args = next(iter(entry.values()))
            args["name"] = names[i]  # every name written, so `inputs` can refer to it
            if not isinstance(layer, InputLayer) and self.inbound[i] != [i - 1]:
                args["inputs"] = [names[j] for j in self.inbound[i]]
            entries.append(entry)
        cfg = {"name": self.name, "init": self.init, "layers": entries, "outputs": [names[-1]]}
        if self._test_time_flip:
            cfg["test_time_flip"] = True
        if self.temperature != 1.0:
            cfg["temperature"] = self.temperature
        return cfg

    @classmethod
    def from_config(cls, cfg: dict, where: str = "model") -> "Functional":
        check_description(cfg, where, KEYS, "layers")
        entries = cfg["layers"]
        layers, wanted = [], []
        if "input_shape" in cfg:  # a chain-like file may give its input as Sequential's do
            layers.append(_input_layer(cfg["input_shape"], where))
            wanted.append(None)
        for i, entry in enumerate(entries):
            at = f"{where}: layers[{i}]"
            if isinstance(entry, dict) and len(entry) == 1:
                (kind, args), = entry.items()
                if isinstance(args, dict) and "inputs" in args:
                    args = dict(args)
                    wanted.append(_names(args.pop("inputs"), at))
                    entry = {kind: args}
                else:
                    wanted.append(None)
            else:
                wanted.append(None)
            layers.append(layer_from_config(entry, at))
        model = cls.__new__(cls)
        model._setup_from(layers, wanted, cfg, where)
        return model

    def _setup_from(self, layers: list[Layer], wanted: list, cfg: dict, where: str) -> None:
        inputs = [i for i, layer in enumerate(layers) if isinstance(layer, InputLayer)]
        if not inputs or inputs[0] != 0:
            raise CnnkitError(f"{where}: a graph starts with an InputLayer entry "
                              "({InputLayer: {shape: [H, W, C]}}) or an input_shape key")
        self.layers = layers  # for the automatic names, before _setup checks them
        names = Sequential.layer_names(self)
        index = {name: i for i, name in enumerate(names)}
        inbound = []
        for i, (layer, want) in enumerate(zip(layers, wanted)):
            if isinstance(layer, InputLayer):
                if want:
                    raise CnnkitError(f"{where}: layers[{i}]: an InputLayer takes no inputs")
                inbound.append([])
                continue
            want = want or [names[i - 1]]
            bad = next((w for w in want if index.get(w, i) >= i), None)
            if bad is not None:
                raise one_earlier(where, i, bad, names[:i])
            inbound.append([index[w] for w in want])
        outputs = cfg.get("outputs", [names[-1]])
        if outputs != [names[-1]]:
            raise CnnkitError(f"{where}: outputs {clipped(outputs)}: valid: [{names[-1]!r}], the "
                              "last layer (list the layers so that the output comes last)")
        self._setup(layers, inbound, inputs, cfg.get("name", "functional"),
                    cfg.get("init", "keras"), cfg.get("class_names"))
        try:
            self.layer_infos()
            self.test_time_flip = cfg.get("test_time_flip", False)
            self.temperature = check_temperature(cfg.get("temperature", 1.0))
        except CnnkitError as e:
            raise CnnkitError(f"{where}: {e}") from None

    def __repr__(self):
        return (f"Functional(name={self.name!r}, layers={len(self.layers)}, "
                f"input_shape={self.input_shape})")


def one_earlier(where, i, bad, earlier) -> CnnkitError:
    return CnnkitError(f"{where}: layers[{i}]: inputs names {clipped(bad)}, which is not a layer "
                       f"listed before it; valid: {', '.join(earlier[-8:])}")


def _names(value, where) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
        raise CnnkitError(f"{where}: inputs must be a layer name or a list of them; received "
                          f"{clipped(value)}")
    return items


def _input_layer(shape, where) -> InputLayer:
    try:
        return InputLayer(shape)
    except CnnkitError as e:
        raise CnnkitError(f"{where}: input_shape: {e}") from None


def is_graph_config(cfg) -> bool:
    """A description with `outputs`, an InputLayer entry or a layer naming its `inputs`."""
    if not isinstance(cfg, dict):
        return False
    entries = cfg.get("layers") if isinstance(cfg.get("layers"), list) else []
    return "outputs" in cfg or any(
        isinstance(e, dict) and len(e) == 1 and (
            "InputLayer" in e or (isinstance(next(iter(e.values())), dict)
                                  and "inputs" in next(iter(e.values())))) for e in entries)


def model_from_config(cfg, where: str = "model", cls=None):
    """A Sequential or a Functional from its description. `cls`: the Sequential class to build
    (cnnkit.keras passes its own; its `graph_type` is the matching graph class)."""
    seq = cls or Sequential
    if is_graph_config(cfg):
        return getattr(seq, "graph_type", Functional).from_config(cfg, where)
    return seq.from_config(cfg, where)



class Nested(Layer):
    """A model used as a layer, as Keras allows: `Sequential([model, Softmax()])`, or
    `model(inputs)` in a graph. It computes the whole model, its last activation included, with
    the model's own weights (training the outer model trains them); its row in a summary is the
    model's, and its description is the model's own, under the model's class name.

    `training=False` (Keras's `base_model(x, training=False)`) runs the model in inference mode
    whatever the outer model does: its batch norm uses and keeps its moving statistics, its
    dropout is off, also once the model is made trainable again for fine-tuning.
    `training=True` runs it in training mode always, in predict too (Monte Carlo dropout)."""

    def __init__(self, model=None, name=None, training=None, **config):
        if training is not None and not isinstance(training, bool):
            raise CnnkitError(f"a nested model's training={clipped(training)} is not supported; "
                              "valid: False (inference mode), True (training mode) or None (the "
                              "outer model's mode)")
        if model is None:  # from a description: {"Sequential": {...its config...}}
            model = model_from_config(config, "nested model")
        elif config or not isinstance(model, Sequential):
            raise CnnkitError(f"a nested model must be a cnnkit model; received "
                              f"{type(model).__name__}")
        # the layer's name keys its weights, where '.' cannot be: Keras names MobileNetV2
        # 'mobilenetv2_1.00_224', its layer here is 'mobilenetv2_1_00_224'
        super().__init__(name or model.name.replace(".", "_"))
        self.model, self.training = model, training

    @property
    def type(self) -> str:
        return "Functional" if isinstance(self.model, Functional) else "Sequential"

    @property
    def trainable(self):
        return getattr(self.model, "trainable", True)

    @trainable.setter
    def trainable(self, value):  # Keras's `model.get_layer("mobilenetv2...").trainable = False`
        self.model.trainable = value

    def get_config(self):
        cfg = self.model.get_config()
        cfg.pop("name", None)  # the layer's name is the model's
        if self.training is not None:
            cfg["training"] = self.training
        return cfg

    def output_shape(self, shape):
        if self.model.input_shape is None:  # Keras builds a model without Input where called
            self.model.set_input_shape(shape)
        if tuple(shape) != tuple(self.model.input_shape):
            raise self._error(f"takes input {tuple(self.model.input_shape)}; received "
                              f"{tuple(shape)}")
        return tuple(self.model.output_shape)

    def params(self, shape):
        rows = self.model.layer_infos()
        return sum(r.trainable for r in rows), sum(r.non_trainable for r in rows)

    def macs(self, shape, out):
        return sum(r.macs for r in self.model.layer_infos())

    def explain(self, shape, out):
        return [f"the model {self.model.name!r}: {len(self.model.layers)} layers, "
                f"{sum(self.params(shape)):,} parameters"]

    def build(self, shape, init):
        from torch import nn

        inner, mode = self.model.net, self.training

        class Whole(nn.Module):  # the inner network with its split-off activation put back
            def __init__(self):
                super().__init__()
                self.net = inner

            def train(self, outer=True):
                super().train(outer)
                if mode is not None:  # training=: the outer model's train() does not reach it
                    self.net.train(mode)
                return self

            def forward(self, x):
                return self.net.outputs(self.net(x))

        return Whole()


def nested(model, inputs, training=None):
    """`model(inputs)` on symbolic tensors: the model as one layer of a new graph;
    `training=False` / `True` keeps it in inference / training mode (see Nested)."""
    return Nested(model, training=training)(inputs)


# a description names a nested model by its class: {"Sequential": {...}}, {"Functional": {...}}
LAYER_TYPES.update(Sequential=Nested, Functional=Nested)
