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
from cnnkit.model.keras_files import (EXTRAS, KERAS_VERSION, MODERN, _legacy_vars,
                                      _set_weights, _vars)
from cnnkit.model.keras_archive import (WEIGHTS, damaged_h5, h5py_module, open_h5, open_zip,
                                        read_member)
from cnnkit.layers import core
from cnnkit.layers.dilation import dilated
from cnnkit.layers.preprocessing import PREPROCESSING_LAYERS, Normalization, Rescaling
from cnnkit.model.graph import Nested
from cnnkit.model.keras_graph import entry, graph_config, storage_paths


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
        if getattr(info.layer, "training", None) is not None and isinstance(info.layer, Nested):
            raise CnnkitError(f"layer {info.name!r}: a Keras Sequential cannot record its nested "
                              f"model's training={info.layer.training}; build the model with "
                              "the functional API (model(x, training=...)) to save it as .keras")
        kind, cfg = _keras_layer(info.layer, info.name, info.input_shape)
        layers.append(entry(kind, cfg, [None, *info.input_shape]))
    return {"module": "keras", "class_name": "Sequential", "registered_name": None,
            "config": {"name": model.name, "trainable": True, "dtype": "float32",
                       "layers": layers, "build_input_shape": shape},
            "build_config": {"input_shape": shape}}


def compile_config(model) -> dict | None:
    """Keras 3's `compile_config` for a model cnnkit.keras compiled (its `compiled_state`:
    optimizer, loss and metrics), else None: saved in the file so that `load_model`, Keras's
    as cnnkit's (cnnkit.keras.saving), returns the model compiled with the same settings."""
    state = getattr(model, "compiled_state", None)
    if state is None:
        return None
    optimizer, loss = state.optimizer, state.loss
    loss_config = {"name": loss.name, "reduction": "sum_over_batch_size",
                   "from_logits": loss.from_logits}
    if loss.label_smoothing:  # Keras's sparse loss takes no label_smoothing argument
        loss_config["label_smoothing"] = loss.label_smoothing
    return {"optimizer": _object("keras.optimizers", type(optimizer).__name__,
                                 optimizer.get_config()),
            "loss": _object("keras.losses", type(loss).__name__, loss_config),
            "loss_weights": None, "metrics": [_metric(name, kind) for name, kind in state.metrics],
            "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1,
            "jit_compile": False}


def _object(module: str, class_name: str, config: dict) -> dict:
    return {"module": module, "class_name": class_name, "config": config,
            "registered_name": None}


def _metric(name: str, kind: str):
    """A metric as Keras serializes it: its name where Keras reads the name alone ('accuracy'
    follows the loss), else its class with the name it logs under."""
    if name in ("accuracy", "acc") or name == kind:
        return name
    class_name = "".join(part.title() for part in kind.split("_"))
    return _object("keras.metrics", class_name, {"name": name, "dtype": "float32"})


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


def _window(layer):
    """The pixels a conv's kernel spans: PyTorch's padding (K - 1) / 2 keeps the size only then."""
    return dilated(layer.kernel_size, layer.dilation_rate)


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
    if isinstance(layer, Nested):  # a model used as a layer: the model's own config
        cfg = {**keras_config(layer.model)["config"], "name": name}
        return layer.type, cfg if base["trainable"] else _frozen(cfg)
    fmt = {"data_format": "channels_last"}
    if isinstance(layer, core.Conv2D):
        return "Conv2D", {**base, "filters": layer.filters, "kernel_size": list(layer.kernel_size),
                          "strides": list(layer.strides),
                          "padding": _padding(layer, name, _window(layer), layer.strides), **fmt,
                          "dilation_rate": list(layer.dilation_rate), "groups": layer.groups,
                          "activation": _fused(layer, name),
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
        return "GlobalAveragePooling2D", {**base, **fmt, "keepdims": layer.keepdims}
    if isinstance(layer, core.Dense):
        return "Dense", {**base, "units": layer.units, "activation": _fused(layer, name),
                         "use_bias": layer.use_bias, "kernel_regularizer": _regularizer(layer)}
    if isinstance(layer, core.Dropout):
        return "Dropout", {**base, "rate": layer.rate, "seed": None,
                           "noise_shape": layer.get_config().get("noise_shape")}
    if isinstance(layer, core.BatchNormalization):
        return "BatchNormalization", {**base, "axis": -1, "momentum": layer.momentum,
                                      "epsilon": layer.epsilon, "center": True, "scale": True}
    if isinstance(layer, core.LeakyReLU):
        return "LeakyReLU", {**base, "negative_slope": layer.negative_slope}
    if isinstance(layer, core.Activation):
        if layer.activation == "leaky_relu":
            return "LeakyReLU", {**base, "negative_slope": 0.01}
        return "Activation", {**base, "activation": layer.activation}
    # -- preprocessing and augmentation layers (issue 27): cnnkit's config is Keras's --
    if isinstance(layer, PREPROCESSING_LAYERS):
        image = {} if isinstance(layer, (Rescaling, Normalization)) else fmt
        return layer.type, {**base, **layer.get_config(), **image}
    if layer.type in MODERN or layer.type == "ReLU":
        return _modern(layer, name, base)
    raise CnnkitError(f"layer {name!r} ({layer.type}) has no Keras equivalent; save this model "
                      "to a directory instead of a .keras/.h5 file")


def _frozen(cfg: dict) -> dict:
    """A frozen model's config as Keras records it: `model.trainable = False` sets every layer's
    trainable (those of the models inside it too), and Keras reads each layer's own flag."""
    for e in cfg["layers"]:
        if "trainable" in e["config"]:
            e["config"]["trainable"] = False
        if "layers" in e["config"]:
            _frozen(e["config"])
    return {**cfg, "trainable": False}


# -- modern CNN layers (issue 27) --
def _modern(layer, name, base):
    """cnnkit's config is Keras's (same argument names); Keras fills in what is left out."""
    cfg = {**base, **layer.get_config()}
    if "padding" in cfg:
        cfg["padding"] = _padding(layer, name, _window(layer), layer.strides)
    if "activation" in cfg:
        cfg["activation"] = _fused(layer, name)
    for key in [k for k in cfg if k.endswith("_initializer")]:
        del cfg[key]  # the weights are in the file; Keras's defaults for its own later builds
    if layer.type == "SpatialDropout2D":  # Keras's own takes no trainable= (nothing to train)
        del cfg["trainable"]
    return layer.type, cfg


_LABELS = {"DepthwiseConv2D": ["depthwise_kernel", "bias"],
           "SeparableConv2D": ["depthwise_kernel", "pointwise_kernel", "bias"]}


def _weights(model):
    """{layer name: [arrays in Keras's layout]}, in order (a Sequential's, for legacy .h5)."""
    from cnnkit.model.saving import keras_weights

    return {row.name: keras_weights(model.net.layers[row.name]) for row in model.layer_infos()}


def _write_weights_h5(model, target) -> None:
    """model.weights.h5 as Keras 3 writes it: each layer's arrays under its storage path, a
    nested model's layers under the model's (its own `vars` empty)."""
    from cnnkit.model.saving import keras_weights

    h5py = h5py_module()
    paths = storage_paths(model, keras_config(model))
    with h5py.File(target, "w") as f:
        layers = f.create_group("layers")
        for key, owner in _owners(model):
            group = layers.create_group(f"{paths[key]}/vars")
            group.attrs["name"] = key[-1]
            module = owner.net.layers[key[-1]]
            arrays = [] if isinstance(owner.get_layer(key[-1]), Nested) else keras_weights(module)
            for i, a in enumerate(arrays):
                group.create_dataset(str(i), data=a)
        f.create_group("vars").attrs["name"] = model.name


def _owners(model, scope=()):
    """(key, the model holding the layer) for each layer, key: the layer names from `model`
    down to the layer; a nested model's layers follow its own entry."""
    for layer, name in zip(model.layers, model.layer_names()):
        yield scope + (name,), model
        if isinstance(layer, Nested):
            yield from _owners(layer.model, scope + (name,))


def keras_bytes(model) -> bytes:
    """The .keras zip, in memory."""
    import datetime

    config = keras_config(model)  # what Keras cannot hold fails here, before anything is written
    compiled = compile_config(model)
    if compiled is not None:
        config["compile_config"] = compiled
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
    h5py = h5py_module()
    kind = "is a graph" if hasattr(model, "inbound") else next(
        ("holds a nested model" for layer in model.layers if isinstance(layer, Nested)), None)
    if kind:
        raise CnnkitError(f"model {model.name!r} {kind}: save it to a .keras file (cnnkit "
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
        compiled = compile_config(model)
        if compiled is not None:  # legacy Keras's training_config: optimizer_config
            compiled["optimizer_config"] = compiled.pop("optimizer")
            f.attrs["training_config"] = json.dumps(compiled)
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
    if layer.type in _LABELS:
        return _LABELS[layer.type][:count]
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
    """Keras's weights into `model`: a `.weights.h5` (by Keras's storage paths), a legacy HDF5
    file (by layer name; layers the model lacks, such as a top it was built without, are
    skipped), or a `.keras` file's weights, as Keras's own load_weights takes all three."""
    source = filepath
    if zipfile.is_zipfile(filepath):
        z, names = open_zip(Path(filepath))
        with z:
            if WEIGHTS not in names:
                raise CnnkitError(f"{filepath}: not a .keras file (no {WEIGHTS} inside)")
            source = io.BytesIO(read_member(z, WEIGHTS, filepath))
    f = open_h5(source, filepath)
    with f, damaged_h5(filepath):
        if "layers" in f:
            paths = storage_paths(model, keras_config(model))
            _set_weights(model, lambda key: _vars(f, paths[key], key[-1], filepath), str(filepath))
        else:
            group = f["model_weights"] if "model_weights" in f else f
            _set_weights(model, lambda key: _legacy_vars(group, key, filepath), str(filepath))
