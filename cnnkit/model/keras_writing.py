"""Keras's model files, written: `.keras` (Keras 3's zip) and legacy `.h5`, so that Keras's own
`keras.models.load_model` reads what cnnkit saves (tests/keras/test_keras_files.py). What
cnnkit knows beyond Keras (class names, preprocessing) rides in `cnnkit.json` inside the zip,
which Keras ignores; what Keras cannot express (PyTorch's explicit padding, a layer of your
own) is one line naming the layer, before anything is written."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from cnnkit.errors import CnnkitError
from cnnkit.model.keras_files import (EXTRAS, KERAS_VERSION, _h5, _h5py, _legacy_vars,
                                _set_weights, _unique, _vars)
from cnnkit.layers import core
from cnnkit.model.keras_graph import graph_config, keras_order, merge_config


# -- writing ------------------------------------------------------------------------------------
def keras_config(model) -> dict:
    """Keras 3's config.json for `model` (one line naming what Keras cannot express): a
    Sequential's, or a functional model's for a graph."""
    if hasattr(model, "inbound"):
        return graph_config(model, _keras_layer)
    shape = [None, *model._require_input()]
    layers = [{"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
               "config": {"batch_shape": shape, "dtype": "float32", "sparse": False,
                          "name": "input_layer"}}]
    for info in model.layer_infos():
        kind, cfg = _keras_layer(info.layer, info.name, info.input_shape)
        layers.append({"module": "keras.layers", "class_name": kind, "registered_name": None,
                       "config": cfg, "build_config": {"input_shape": [None, *info.input_shape]}})
    return {"module": "keras", "class_name": "Sequential", "registered_name": None,
            "config": {"name": model.name, "trainable": True, "dtype": "float32",
                       "layers": layers, "build_input_shape": shape},
            "build_config": {"input_shape": shape}}


def _padding(layer, name, kernel, strides, allow_same_ints=True):
    pad = layer.padding
    if isinstance(pad, str):
        return pad
    if tuple(pad) == (0, 0):
        return "valid"
    # PyTorch's padding=(k-1)/2 at stride 1 pads as Keras's 'same' does
    if allow_same_ints and strides == (1, 1) and all(k % 2 == 1 and p == (k - 1) // 2
                                                     for p, k in zip(pad, kernel)):
        return "same"
    raise CnnkitError(f"{layer.type} {name!r}: padding={tuple(pad)} has no Keras "
                      "equivalent; a .keras file can hold 'valid' or 'same' only (save to a "
                      "directory instead)")


def _regularizer(layer):
    l1, l2 = getattr(layer, "l1_factor", 0.0), layer.l2()
    if not (l1 or l2):
        return None
    kind, cfg = ("L1L2", {"l1": l1, "l2": l2}) if l1 else ("L2", {"l2": l2})
    return {"module": "keras.regularizers", "class_name": kind, "config": cfg,
            "registered_name": None}


def _fused(layer, name):
    act = layer.activation
    if act == "leaky_relu":
        raise CnnkitError(f"{layer.type} {name!r}: activation 'leaky_relu' (slope 0.01) "
                          "differs from Keras's (0.2); use a LeakyReLU(0.01) layer to save as .keras")
    return act


def _keras_layer(layer, name, shape):
    base = {"name": name, "trainable": getattr(layer, "trainable", True), "dtype": "float32"}
    fmt = {"data_format": "channels_last"}
    if isinstance(layer, core.Conv2D):
        return "Conv2D", {**base, "filters": layer.filters, "kernel_size": list(layer.kernel_size),
                          "strides": list(layer.strides),
                          "padding": _padding(layer, name, layer.kernel_size, layer.strides), **fmt,
                          "dilation_rate": [1, 1], "groups": 1, "activation": _fused(layer, name),
                          "use_bias": layer.use_bias, "kernel_regularizer": _regularizer(layer)}
    if isinstance(layer, (core.MaxPooling2D, core.AveragePooling2D)):
        kind = "MaxPooling2D" if isinstance(layer, core.MaxPooling2D) else "AveragePooling2D"
        return kind, {**base, "pool_size": list(layer.pool_size), "strides": list(layer.strides),
                      "padding": _padding(layer, name, layer.pool_size, layer.strides, False), **fmt}
    if isinstance(layer, core.ZeroPadding2D):
        t, b, left, r = layer.pads
        return "ZeroPadding2D", {**base, "padding": [[t, b], [left, r]], **fmt}
    if isinstance(layer, core.Flatten):
        return "Flatten", {**base, **fmt}
    if isinstance(layer, core.GlobalAveragePooling2D):
        return "GlobalAveragePooling2D", {**base, **fmt, "keepdims": False}
    if isinstance(layer, core.Dense):
        return "Dense", {**base, "units": layer.units, "activation": _fused(layer, name),
                         "use_bias": layer.use_bias, "kernel_regularizer": _regularizer(layer)}
    if isinstance(layer, core.Dropout):
        return "Dropout", {**base, "rate": layer.rate, "seed": None, "noise_shape": None}
    if isinstance(layer, core.BatchNormalization):
        return "BatchNormalization", {**base, "axis": -1, "momentum": layer.momentum,
                                      "epsilon": layer.epsilon, "center": True, "scale": True}
    if isinstance(layer, core.LeakyReLU):
        return "LeakyReLU", {**base, "negative_slope": layer.negative_slope}
    if isinstance(layer, core.Activation):
        if layer.activation == "leaky_relu":
            return "LeakyReLU", {**base, "negative_slope": 0.01}
        return "Activation", {**base, "activation": layer.activation}
    merge = merge_config(layer, base)
    if merge is not None:
        return merge
    raise CnnkitError(f"layer {name!r} ({layer.type}) has no Keras equivalent; save this model "
                      "to a directory instead of a .keras/.h5 file")


def _rows(model) -> list:
    """The layers' rows in the order Keras lists them, which numbers their weights' paths."""
    rows = model.layer_infos()
    return [rows[i] for i in keras_order(model)] if hasattr(model, "inbound") else rows


def _weights(model):
    """{layer name: [arrays in Keras's layout]}, in Keras's order."""
    from cnnkit.model.saving import keras_weights

    return {row.name: keras_weights(model.net.layers[row.name]) for row in _rows(model)}


def _kinds(model) -> list[str]:
    """Each layer's Keras class name, in Keras's order (a graph's input layers included)."""
    return ["InputLayer" if i.layer.type == "InputLayer" else
            _keras_layer(i.layer, i.name, i.input_shape)[0] for i in _rows(model)]


def _write_weights_h5(model, target) -> None:
    h5py = _h5py()
    kinds = _kinds(model)
    with h5py.File(target, "w") as f:
        layers = f.create_group("layers")
        for path, (name, arrays) in zip(_unique(kinds), _weights(model).items()):
            group = layers.create_group(path).create_group("vars")
            group.attrs["name"] = name
            for i, a in enumerate(arrays):
                group.create_dataset(str(i), data=a)
        f.create_group("vars").attrs["name"] = model.name


def keras_bytes(model) -> bytes:
    """The .keras zip, in memory."""
    import datetime

    config = keras_config(model)  # what Keras cannot hold fails here, before anything is written
    weights = io.BytesIO()
    _write_weights_h5(model, weights)
    extras = {"class_names": model.class_names, "preprocessing": model.preprocessing,
              "dataset": getattr(model, "dataset", None)}
    meta = {"keras_version": KERAS_VERSION,
            "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("metadata.json", json.dumps(meta))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", weights.getvalue())
        z.writestr(EXTRAS, json.dumps(extras))
    return buf.getvalue()


def h5_bytes(model) -> bytes:
    """A legacy Keras .h5 file, in memory: `model_config` and `model_weights`, as Keras writes."""
    h5py = _h5py()
    if hasattr(model, "inbound"):
        raise CnnkitError(f"model {model.name!r} is a graph: save it to a .keras file (cnnkit "
                          "writes legacy .h5 files of Sequential models)")
    config = keras_config(model)
    legacy = {"class_name": "Sequential", "config": {
        **config["config"], "layers": [{"class_name": e["class_name"], "config": e["config"]}
                                       for e in config["config"]["layers"]]}}
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.attrs["backend"] = "torch"
        f.attrs["keras_version"] = KERAS_VERSION
        f.attrs["model_config"] = json.dumps(legacy)
        group = f.create_group("model_weights")
        weights = _weights(model)
        group.attrs["layer_names"] = [n.encode() for n in weights]
        group.attrs["backend"] = "torch"
        group.attrs["keras_version"] = KERAS_VERSION
        for layer, (name, arrays) in zip(model.layers, weights.items()):
            labels = _weight_labels(layer, len(arrays))
            g = group.create_group(name)
            g.attrs["weight_names"] = [f"{name}/{label}".encode() for label in labels]
            for label, a in zip(labels, arrays):
                g.create_dataset(f"{name}/{label}", data=a)
    return buf.getvalue()


def _weight_labels(layer, count):
    if isinstance(layer, core.BatchNormalization):
        return ["gamma", "beta", "moving_mean", "moving_variance"][:count]
    return (["kernel", "bias"] if count <= 2 else [f"w{i}" for i in range(count)])[:count]


def save_keras_file(model, path) -> Path:
    from cnnkit.fsutil import atomic_write_bytes

    path = Path(path)
    data = keras_bytes(model) if path.suffix.lower() == ".keras" else h5_bytes(model)
    return atomic_write_bytes(path, data)


# -- weights only (model.save_weights / load_weights, ModelCheckpoint(save_weights_only)) ------
def save_weights(model, filepath) -> None:
    from cnnkit.fsutil import atomic_write_bytes

    if not str(filepath).endswith(".weights.h5"):
        raise CnnkitError(f"save_weights: the filepath must end in .weights.h5; received "
                          f"{str(filepath)!r}")
    buf = io.BytesIO()
    _write_weights_h5(model, buf)
    atomic_write_bytes(filepath, buf.getvalue())


def load_weights(model, filepath) -> None:
    f = _h5(filepath, filepath)
    with f:
        if "layers" in f:
            paths = dict(zip([row.name for row in _rows(model)], _unique(_kinds(model))))
            _set_weights(model, lambda name: _vars(f, paths[name], name), str(filepath))
        else:
            group = f["model_weights"] if "model_weights" in f else f
            _set_weights(model, lambda name: _legacy_vars(group, name), str(filepath))
