"""Keras's functional models in its files: a graph of layers read from a `.keras` file's
config into a cnnkit graph (cnnkit.model.graph), and a cnnkit graph written as Keras 3 writes
a functional model, so that real Keras loads it.

Keras 3 lists a functional model's layers, its input layers included, each with the tensors it
was called on (`inbound_nodes`: `keras_history` names the layer a tensor comes from; a merge
layer's first argument is a list of them; Keras 2 wrote `[[name, node, index, kwargs], ...]`),
and names the model's `input_layers` and `output_layers`. Its weights file keeps each layer's
weights under its class name in snake case, numbered in the order of that list.

A model used as a layer (cnnkit.model.graph.Nested) is listed with the model's own class name and
config, its call's `training=False`/`True` in its node's kwargs; its layers' weights are kept
under its own path: `layers/functional/layers/conv2d/vars` (keras.src.saving.saving_lib).
"""
from __future__ import annotations

from cnnkit.errors import CnnkitError, clipped

# Keras's models as layers: the module Keras 3 writes for each
NESTED = {"Sequential": "keras", "Functional": "keras.src.models.functional"}


def entry(kind: str, cfg: dict, shape) -> dict:
    """The part of a layer's entry common to Sequential and functional configs; `shape`: the
    input shape the layer is built for (a Functional records none: it is built already)."""
    return {"module": NESTED.get(kind, "keras.layers"), "class_name": kind, "config": cfg,
            "registered_name": "Functional" if kind == "Functional" else None,
            "build_config": {"input_shape": None if kind == "Functional" else shape}}


def call_options(e: dict) -> dict:
    """The `training=` a functional config's entry was called with ({} if none)."""
    nodes = e.get("inbound_nodes") or [{}]
    kwargs = nodes[0].get("kwargs") if isinstance(nodes[0], dict) else None
    training = (kwargs or {}).get("training")
    return {} if training is None else {"training": training}


def storage_paths(model, config, scope: tuple = (), at: str = "") -> dict[tuple, str]:
    """{(nested model's layer name, ..., layer name): where Keras 3 keeps its weights} for the
    cnnkit `model` that the Keras `config` describes, nested models' layers included."""
    from cnnkit.model.graph import Nested
    from cnnkit.model.keras_files import _entries, _saving_names

    entries = _entries(config)
    if hasattr(model, "inbound"):  # by name, as cnnkit names a nested model's layer: no '.'
        own = {n.replace(".", "_"): p for n, p in weight_paths(entries).items()}
        by_name = {(e.get("name") or e.get("config", {}).get("name")).replace(".", "_"): e
                   for e in entries}
    else:  # a Sequential: its layers by position, its input layer not among them
        own = dict(zip(model.layer_names(), _saving_names(config)))
        kept = [e for e in entries if e.get("class_name") != "InputLayer"]
        by_name = dict(zip(model.layer_names(), kept))
    paths = {}
    for layer, name in zip(model.layers, model.layer_names()):
        paths[scope + (name,)] = at + own[name]
        if isinstance(layer, Nested):
            paths.update(storage_paths(layer.model, by_name[name], scope + (name,),
                                       f"{at}{own[name]}/layers/"))
    return paths


# -- reading ------------------------------------------------------------------------------------
def inbound_names(entry: dict, where: str) -> list[str]:
    """The names of the layers an entry of a functional config is called on, in order."""
    nodes = entry.get("inbound_nodes") or []
    name = entry.get("name") or entry.get("config", {}).get("name")
    if len(nodes) > 1:
        raise CnnkitError(f"{where}: layer {name!r} is called {len(nodes)} times (shared "
                          "weights); cnnkit's graphs call each layer once")
    found: list[str] = []

    def walk(value):
        if isinstance(value, dict):
            history = value.get("config", {}).get("keras_history") if isinstance(
                value.get("config"), dict) else None
            if history:
                found.append(history[0])
            else:
                for v in value.values():
                    walk(v)
        elif isinstance(value, list):
            if len(value) >= 3 and isinstance(value[0], str) and isinstance(value[1], int):
                found.append(value[0])  # Keras 2: [name, node index, tensor index, kwargs]
            else:
                for v in value:
                    walk(v)

    for node in nodes:
        walk(node.get("args", []) if isinstance(node, dict) else node)
    return found


def _layer_refs(value) -> list[str]:
    """`input_layers` / `output_layers`: ['name', 0, 0] or [['name', 0, 0], ...]."""
    if isinstance(value, list) and value and isinstance(value[0], str):
        return [value[0]]
    return [v[0] for v in value or [] if isinstance(v, list) and v]


def graph_from_config(body: dict, entries: list, graph_type, make_layer, where: str):
    """A cnnkit graph of class `graph_type` from a functional config's `entries`, each layer
    built by `make_layer(class_name, config, **call_options)` and called on the tensors its
    node names."""
    from cnnkit.layers.symbolic import Input

    tensors: dict = {}
    inputs = {}
    for e in entries:
        kind, cfg = e.get("class_name"), dict(e.get("config", {}))
        name = e.get("name") or cfg.get("name")
        if kind == "InputLayer":
            shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
            if not shape:
                raise CnnkitError(f"{where}: input {name!r} records no shape")
            tensors[name] = inputs[name] = Input(tuple(shape[1:]), name=name)
            continue
        wanted = inbound_names(e, where)
        missing = next((w for w in wanted if w not in tensors), None)
        if not wanted or missing is not None:
            raise CnnkitError(f"{where}: layer {name!r} is called on {clipped(missing)}, which "
                              "no layer listed before it outputs")
        try:
            layer = make_layer(kind, cfg, **call_options(e))
            args = [tensors[w] for w in wanted]
            tensors[name] = layer(args if layer.merges else args[0])
        except (CnnkitError, TypeError) as err:  # TypeError: a required argument missing
            raise CnnkitError(f"{where}: {err}") from None
    ins = _layer_refs(body.get("input_layers")) or list(inputs)
    outs = _layer_refs(body.get("output_layers"))
    unknown = next((n for n in ins + outs if n not in tensors), None)
    if unknown is not None or len(outs) != 1:
        raise CnnkitError(f"{where}: output_layers {clipped(body.get('output_layers'))}: valid: "
                          "one layer of the model (cnnkit's classifiers have one output)")
    return graph_type([inputs[n] for n in ins], tensors[outs[0]],
                      name=body.get("name") or "functional")


def weight_paths(entries: list) -> dict[str, str]:
    """{layer name: where Keras 3 keeps its weights}: its class in snake case, numbered in the
    order of the config's layers (input layers included, as Keras counts them)."""
    from cnnkit.model.keras_files import _unique

    names = [e.get("name") or e.get("config", {}).get("name") for e in entries]
    return dict(zip(names, _unique([e.get("class_name") for e in entries])))


# -- writing ------------------------------------------------------------------------------------
def keras_order(model) -> list[int]:
    """The graph's layer indices in the order Keras lists a functional model's layers (and so
    numbers their weights): deepest first, where a layer's depth is its longest path to the
    output, ties in the order a depth-first walk from the output first meets them
    (keras.src.ops.function.map_graph). cnnkit's own order is the order of creation."""
    inbound, last = model.inbound, len(model.inbound) - 1
    met: dict[int, int] = {}
    stack = [last]
    while stack:  # pre-order, each layer's inputs in order (a stack: pushed reversed)
        i = stack.pop()
        if i not in met:
            met[i] = len(met)
            stack.extend(reversed(inbound[i]))
    depth = dict.fromkeys(range(last + 1), 0)
    for i in range(last, -1, -1):  # cnnkit's order is topological: consumers come later
        for j in inbound[i]:
            depth[j] = max(depth[j], depth[i] + 1)
    return sorted(range(last + 1), key=lambda i: (-depth[i], met.get(i, -1)))


def _tensor(name: str, shape) -> dict:
    return {"class_name": "__keras_tensor__",
            "config": {"shape": [None, *shape], "dtype": "float32", "keras_history": [name, 0, 0]}}


def graph_config(model, keras_layer) -> dict:
    """Keras 3's config.json of a functional model for the cnnkit graph `model`;
    `keras_layer(layer, name, input_shape)` gives each layer's (class name, config)."""
    infos, names = model.layer_infos(), model.layer_names()
    entries = []
    for i in keras_order(model):
        info, name = infos[i], names[i]
        if info.layer.type == "InputLayer":
            entries.append({"module": "keras.layers", "class_name": "InputLayer",
                            "config": {"batch_shape": [None, *info.output_shape],
                                       "dtype": "float32", "sparse": False, "name": name},
                            "registered_name": None, "name": name, "inbound_nodes": []})
            continue
        kind, cfg = keras_layer(info.layer, name, info.input_shape)
        tensors = [_tensor(names[j], infos[j].output_shape) for j in model.inbound[i]]
        merges = info.layer.merges
        shape = [[None, *s] for s in info.input_shape] if merges else [None, *info.input_shape]
        training = getattr(info.layer, "training", None) if kind in NESTED else None
        kwargs = {} if training is None else {"training": training}
        entries.append({**entry(kind, cfg, shape), "name": name, "inbound_nodes": [
            {"args": [tensors] if merges else tensors, "kwargs": kwargs}]})
    refs = [[names[i], 0, 0] for i in model.input_indices]
    return {"module": "keras.src.models.functional", "class_name": "Functional",
            "registered_name": "Functional",
            "config": {"name": model.name, "trainable": True, "layers": entries,
                       "input_layers": refs[0] if len(refs) == 1 else refs,
                       "output_layers": [names[-1], 0, 0]},
            "build_config": {"input_shape": None}}
