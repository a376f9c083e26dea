"""Keras's model files, read and written: `.keras` (Keras 3: a zip of `config.json`,
`metadata.json` and `model.weights.h5`) and legacy `.h5` (HDF5 with `model_config` and
`model_weights`), for Sequential and functional models made of the layers cnnkit has (a
functional model that is not one chain becomes a cnnkit graph: cnnkit.model.keras_graph).

Reading maps each Keras layer config to the cnnkit layer computing the same function and
copies its weights in Keras's layout (conv kernel (kh, kw, in, out), dense kernel (in, out),
batch norm gamma, beta, moving mean, moving variance). Layers cnnkit lacks are named in one
line. Writing is cnnkit.model.keras_writing.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

from cnnkit.errors import CnnkitError
from cnnkit.io.bounded import MAX_BYTES
from cnnkit.layers import ACTIVATIONS, LAYER_TYPES
from cnnkit.model.keras_archive import (WEIGHTS, check_extras, check_weights_fit, damaged_h5,
                                        datasets, malformed_config, numeric, open_h5, open_zip,
                                        parse_json, probe_h5, read_member)
from cnnkit.model.inputs import scales_own_pixels
from cnnkit.errors import clipped, printable
from cnnkit.model.keras_graph import (NESTED, call_options, graph_from_config, inbound_names,
                                     storage_paths)

KERAS_VERSION = "3.15.1"  # the Keras these files are tested against (tests/keras)
SUPPORTED = ("InputLayer", "Conv2D", "MaxPooling2D", "AveragePooling2D", "ZeroPadding2D",
             "Flatten", "GlobalAveragePooling2D", "Dense", "Dropout", "BatchNormalization",
             "Activation", "LeakyReLU", "ReLU", "Softmax")
KERAS_ACTIVATIONS = {"swish": "silu"}  # Keras's other names for cnnkit's activations
_IMAGE = {"data_format": ("channels_last", None), "dilation_rate": (1, [1, 1], (1, 1)),
          "groups": (1,)}
FIXED = {  # Keras's options that cnnkit computes one way only: layer -> {argument: accepted}
    **dict.fromkeys(("MaxPooling2D", "AveragePooling2D", "ZeroPadding2D", "Flatten",
                     "GlobalAveragePooling2D"), _IMAGE),
    "Conv2D": {"data_format": _IMAGE["data_format"]},
    "BatchNormalization": {"axis": (-1, 3, [-1], [3]), "center": (True,), "scale": (True,)},
    "Softmax": {"axis": (-1, [-1])},
}
# -- modern CNN layers (issue 27) --
MODERN = ("DepthwiseConv2D", "SeparableConv2D", "GlobalMaxPooling2D", "Reshape",
          "SpatialDropout2D", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",
          "Concatenate")
SUPPORTED += MODERN
KERAS_ACTIVATIONS.update(hard_swish="hard_silu")
_NONE = (None,)
FIXED.update({
    "DepthwiseConv2D": {"data_format": _IMAGE["data_format"], "depthwise_regularizer": _NONE,
                        "depthwise_constraint": _NONE, "bias_constraint": _NONE},
    "SeparableConv2D": {"data_format": _IMAGE["data_format"], "depthwise_regularizer": _NONE,
                        "pointwise_regularizer": _NONE, "depthwise_constraint": _NONE,
                        "pointwise_constraint": _NONE, "bias_constraint": _NONE},
    "GlobalMaxPooling2D": {"data_format": _IMAGE["data_format"]},
    "SpatialDropout2D": {"data_format": _IMAGE["data_format"]},
})
# -- preprocessing and augmentation layers (issue 27) --
SUPPORTED += ("Rescaling", "Normalization", "Resizing", "RandomFlip", "RandomRotation",
              "RandomZoom", "RandomTranslation", "RandomContrast")
FIXED.update({
    **dict.fromkeys(("RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation",
                     "RandomContrast"), {"data_format": _IMAGE["data_format"]}),
    # Resizing's padding options: cnnkit resizes (or crops) only
    "Resizing": {"data_format": _IMAGE["data_format"], "pad_to_aspect_ratio": (False,),
                 "antialias": (False,), "fill_mode": ("constant",)},
})

RENAMED = {"LeakyReLU": {"alpha": "negative_slope"}}  # Keras 2's names
DEFAULTS = {"LeakyReLU": {"negative_slope": 0.3}}  # Keras's defaults where cnnkit's differ
EXTRAS = "cnnkit.json"


# -- reading ------------------------------------------------------------------------------------
def input_scale(scale, where: str = "scale") -> dict:
    """The preprocessing that multiplies 8-bit pixels by `scale` before the network: 1/255 is
    cnnkit's {"normalize": "unit"}; any other factor (1: raw 0-255 pixels) is written as
    (x / 255 - 0) / (1 / (255 · scale)), the standardization every cnnkit tool (predict,
    evaluate, serve, ONNX export) already applies and saves."""
    import math

    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) \
            or scale <= 0:
        raise CnnkitError(f"{where}={clipped(scale)} is out of range; valid: a number > 0, "
                          "1/255 (inputs x / 255, as seed 002 feeds them) or 1 (raw 0-255 "
                          "pixels, as seed 000's first model)")
    if math.isclose(scale * 255, 1.0, rel_tol=1e-9):
        return {"normalize": "unit"}
    return {"normalize": "standardize", "mean": [0.0], "std": [1 / (255 * float(scale))]}


def load_keras_file(path, cls, scale=None):
    """A model of class `cls` (a cnnkit Sequential) from a .keras or .h5 file.

    A Keras file records no preprocessing: the model takes whatever its Keras user fed it.
    cnnkit's tools feed 8-bit pixels, multiplied by `scale` first; without `scale`, by what
    the file's cnnkit.json records (a file cnnkit wrote), else by 1 when the model's first
    layer past its augmentation layers is Rescaling (it scales raw pixels itself), else by
    1/255, as most Keras code (seeds 001, 002, 004) scales its images.
    `model.input_scale_recorded` says whether the scale was given or recorded."""
    path = Path(path)
    if not path.is_file():
        raise CnnkitError(f"{path}: no such file")
    if path.suffix.lower() == ".keras":
        if not zipfile.is_zipfile(path):
            raise CnnkitError(f"{path}: not a .keras file (a zip holding config.json and "
                              "model.weights.h5)")
        z, names = open_zip(path)
        with z:
            for needed in ("config.json", WEIGHTS):
                if needed not in names:
                    raise CnnkitError(f"{path}: not a .keras file (no {needed} inside)")
            config = parse_json(read_member(z, "config.json", path, MAX_BYTES),
                                f"{path}: config.json")
            compiled = config.get("compile_config") if isinstance(config, dict) else None
            extras = check_extras(parse_json(read_member(z, EXTRAS, path, MAX_BYTES),
                                        f"{path}: {EXTRAS}"), f"{path}: {EXTRAS}") \
                if EXTRAS in names else {}
            with malformed_config(path):
                model = _model(config, cls, str(path))
            check_weights_fit(model, z.getinfo(WEIGHTS).file_size, path)
            data = read_member(z, WEIGHTS, path)
            probe_h5(io.BytesIO(data), f"{path}: {WEIGHTS}", len(data))
            weights = open_h5(io.BytesIO(data), path, "model.weights.h5 is unreadable")
        with malformed_config(path):
            paths = storage_paths(model, config)
        with weights, damaged_h5(path):
            _set_weights(model, lambda key: _vars(weights, paths[key], key[-1], path), str(path))
    else:
        probe_h5(path, path, path.stat().st_size)
        weights = open_h5(path, path)
        with weights, damaged_h5(path):
            raw = weights.attrs.get("model_config")
            if raw is None:
                raise CnnkitError(f"{path}: holds weights only (no model_config); build the "
                                  "model in code, then model.load_weights(path)")
            config = parse_json(raw, f"{path}: model_config")
            compiled = _training_config(weights.attrs.get("training_config"), path)
            with malformed_config(path):
                model = _model(config, cls, str(path))
            check_weights_fit(model, path.stat().st_size, path)
            group = weights["model_weights"] if "model_weights" in weights else weights
            _set_weights(model, lambda key: _legacy_vars(group, key, path), str(path))
        extras = {}
    model.saved_compile_config = compiled  # cnnkit.keras.saving.load_model compiles with it
    if extras.get("class_names") is not None:
        model.class_names = [printable(n) for n in extras["class_names"]]
    model.input_scale_recorded = scale is not None or bool(extras.get("preprocessing"))
    if scale is not None:  # the caller's word wins over a record
        model.preprocessing = input_scale(scale)
    elif extras.get("preprocessing"):
        from cnnkit.model.saving import check_preprocessing

        model.preprocessing = check_preprocessing(extras["preprocessing"], model.input_shape[-1],
                                                  str(path))
    elif scales_own_pixels(model):
        model.preprocessing = input_scale(1)  # the model scales its own input: raw 0-255 pixels
    else:
        model.preprocessing = {"normalize": "unit"}  # assumed: x / 255
    model.dataset = extras.get("dataset")
    model.net.eval()
    return model


def _training_config(raw, path):
    """Legacy Keras's `training_config` attribute as Keras 3's compile_config (its optimizer
    under the key `optimizer`), or None for a model saved before compile()."""
    if raw is None:
        return None
    config = parse_json(raw, f"{path}: training_config")
    if isinstance(config, dict) and "optimizer_config" in config:
        config["optimizer"] = config.pop("optimizer_config")
    return config


def _snake(name: str) -> str:
    """Keras's `naming.to_snake_case` (LeakyReLU -> leaky_re_lu, Conv2D -> conv2d)."""
    import re

    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _unique(kinds) -> list[str]:
    """Where Keras 3 keeps each layer's weights in model.weights.h5: `layers/<its class in
    snake_case>`, numbered `_1`, `_2` among layers of one class (not the layer's own name)."""
    used, out = {}, []
    for kind in kinds:
        name = _snake(kind)
        if name in used:
            used[name] += 1
            name = f"{name}_{used[name]}"
        else:
            used[name] = 0
        out.append(name)
    return out


def _entries(config) -> list:
    body = config.get("config", {})
    return body.get("layers", body) if isinstance(body, dict) else body


def _saving_names(config) -> list[str]:
    """The weight paths of a config's layers (InputLayer excluded), in order."""
    kinds = [e.get("class_name") for e in _entries(config)]
    return [p for p, k in zip(_unique(kinds), kinds) if k != "InputLayer"]


def _vars(f, path, name=None, where=""):
    """A layer's weight datasets, unread (set_keras_weights reads each after its shape)."""
    key = f"layers/{path}/vars"
    if key not in f and name is not None:
        key = f"layers/{name}/vars"  # files written by name
    if key not in f:
        return []
    return datasets(f[key], f"{where}: {key}")


def _legacy_vars(group, key, where=""):
    """A layer's arrays in a legacy HDF5 file, `key` as _set_weights gives it: under the layer's
    name; a nested model's layers under the outermost model's name, as '<layer>/<weight>'."""
    top = next((n for n in group if n.replace(".", "_") == key[0]), None)  # cnnkit's: no '.'
    if top is None:
        return []
    g = group[top]
    listed = g.attrs.get("weight_names", [])
    if not hasattr(g, "keys") or getattr(listed, "ndim", 1) != 1:
        raise CnnkitError(f"{where}: layer {clipped(top)} is not a group listing its weight_names")
    names = [n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in listed]
    if len(key) > 1:
        names = [n for n in names if n.split("/")[-2:-1] == [key[-1]]]
    missing = [n for n in names if n not in g]
    if missing:
        raise CnnkitError(f"{where}: layer {clipped(top)} names weight {clipped(missing[0])}, "
                          "which it does not hold")
    return [numeric(g[n], f"{where}: {top}") for n in names]


def _model(config, cls, where):
    """The cnnkit model a Keras config describes (weights not yet set)."""
    if not isinstance(config, dict):
        raise CnnkitError(f"{where}: the model config is not a mapping")
    kind = config.get("class_name")
    body = config.get("config", {})
    if kind not in ("Sequential", "Functional", "Model"):
        raise CnnkitError(f"{where}: a {clipped(kind)} model; cnnkit reads Sequential and "
                          "functional models")
    entries = body.get("layers", body) if isinstance(body, dict) else body
    if not isinstance(entries, list):
        raise CnnkitError(f"{where}: the model config has no list of layers")
    for i, e in enumerate(entries):
        if not (isinstance(e, dict) and isinstance(e.get("class_name"), str)
                and isinstance(e.get("config", {}), dict)):
            raise CnnkitError(f"{where}: layers[{i}] is {clipped(e)}; valid: a mapping with a "
                              "class_name and a config mapping")
    unsupported = [f"{e.get('class_name')} ({e.get('config', {}).get('name')})"
                   for e in entries if e.get("class_name") not in (*SUPPORTED, *NESTED)]
    if unsupported:
        raise CnnkitError(f"{where}: layers cnnkit does not have: {', '.join(unsupported)}; "
                          f"supported: {', '.join(SUPPORTED[1:])}")
    if kind != "Sequential" and not _is_chain(entries, where):
        from cnnkit.model.graph import Functional

        model = graph_from_config(body, entries, getattr(cls, "graph_type", Functional),
                                  lambda kind, cfg, **call: _layer(kind, cfg, cls, where, **call),
                                  where)
        _infer_shapes(model, where)
        return model
    shape = _input_shape(body, entries, where)
    name = body.get("name") if isinstance(body, dict) else None
    model = cls(name=name if isinstance(name, str) and name else "sequential", input_shape=shape)
    for e in entries:
        if e["class_name"] == "InputLayer":
            continue
        try:
            model.add(_layer(e["class_name"], dict(e.get("config", {})), cls, where))
        except (CnnkitError, TypeError) as err:  # TypeError: a required argument missing
            raise CnnkitError(f"{where}: {err}") from None
    _infer_shapes(model, where)
    return model


def _infer_shapes(model, where) -> None:
    """Shapes (and sizes) checked now, before any weight is allocated, naming the layer that
    does not fit."""
    try:
        model.layer_infos()
    except CnnkitError as e:
        raise CnnkitError(e if str(e).startswith(where) else f"{where}: {e}") from None


def _is_chain(entries, where) -> bool:
    """One input, then layers each called on the layer before it only: read as a Sequential."""
    previous = None
    for e in entries:
        if call_options(e):  # training= on a call: only a functional model records it
            return False
        if previous is not None and inbound_names(e, where) != [previous]:
            return False
        previous = e.get("name") or e.get("config", {}).get("name")
    return True


def _input_shape(body, entries, where):
    first = entries[0].get("config", {}) if entries else {}
    for shape in (first.get("batch_shape"), first.get("batch_input_shape"),
                  body.get("build_input_shape") if isinstance(body, dict) else None,
                  entries[0].get("build_config", {}).get("input_shape") if entries else None):
        if shape:
            return tuple(shape[1:])
    raise CnnkitError(f"{where}: the model's input shape is not recorded (an unbuilt model)")


def _activation(value, layer):
    if isinstance(value, dict):  # Keras 3 may serialize a function as {"config": "relu", ...}
        value = value.get("config") if isinstance(value.get("config"), str) else value.get("class_name")
    value = KERAS_ACTIVATIONS.get(value, value)
    if value == "leaky_relu":  # Keras's slope 0.2; cnnkit's fused one is 0.01
        raise CnnkitError(f"{layer}: activation 'leaky_relu' (Keras's slope 0.2) is not "
                          "supported fused into a layer; use a LeakyReLU layer")
    if value not in ACTIVATIONS:
        raise CnnkitError(f"{layer}: unknown activation {clipped(value)}; supported: "
                          f"{', '.join(ACTIVATIONS)}")
    return value


def _l2(value):
    if not value:
        return None
    cfg = value.get("config", {}) if isinstance(value, dict) else {}
    return cfg.get("l2") or None


def keras_arguments(kind: str, cfg: dict, where: str) -> dict:
    """A Keras layer's arguments (a file's config, or those given to a cnnkit.keras layer) as
    cnnkit's layer `kind` takes them: FIXED options checked and dropped, RENAMED ones renamed."""
    cfg = dict(cfg)
    for key, ok in FIXED.get(kind, {}).items():
        if key in cfg and (value := cfg.pop(key)) not in ok:
            raise CnnkitError(f"{where}: {key}={clipped(value)} is not supported; valid: {ok[0]!r}")
    for old, new in RENAMED.get(kind, {}).items():
        if old in cfg:
            cfg.setdefault(new, cfg.pop(old))
    if isinstance(cfg.get("activation"), str):  # 'swish': cnnkit's 'silu'
        cfg["activation"] = KERAS_ACTIVATIONS.get(cfg["activation"], cfg["activation"])
    return cfg


def _layer(kind, cfg, cls, where, training=None):
    """The cnnkit layer for a Keras layer config: its keys are cnnkit's argument names; a model
    used as a layer is read as a model of class `cls` (as the whole file's) and nested."""
    import inspect

    name = cfg.get("name")
    if kind in NESTED:
        from cnnkit.model.graph import Nested

        inner = _model({"class_name": kind, "config": cfg}, cls, f"{where}: {kind} {name!r}")
        if cfg.get("trainable") is False:  # base_model.trainable = False, as Keras records it
            inner.trainable = False
        return Nested(inner, training=training)
    if training is not None:
        raise CnnkitError(f"{kind} {name!r}: called with training={clipped(training)}; cnnkit "
                          "takes training= on a nested model's call only")
    cfg = {**DEFAULTS.get(kind, {}), **keras_arguments(kind, cfg, f"{kind} {name!r}")}
    if kind == "Softmax":
        kind, cfg["activation"] = "Activation", "softmax"
    if "activation" in cfg:
        cfg["activation"] = _activation(cfg["activation"], name)
    if "kernel_regularizer" in cfg:
        cfg["kernel_regularizer"] = _l2(cfg["kernel_regularizer"])
    cls = LAYER_TYPES[kind]
    # the weights come from the file: no initializers
    params = {p for p in inspect.signature(cls.__init__).parameters
              if p != "self" and not p.endswith("_initializer")}
    return cls(**{k: v for k, v in cfg.items() if k in params})


def _set_weights(model, arrays_of, where, scope=()):
    """Each layer's weights from `arrays_of(key)`, key: the layer names from the outermost model
    down to the layer (a nested model's layers are set in the model itself, which the outer
    model's network runs)."""
    from cnnkit.model.graph import Nested

    for layer, name in zip(model.layers, model.layer_names()):
        if isinstance(layer, Nested):
            _set_weights(layer.model, arrays_of, where, scope + (name,))
            continue
        arrays = arrays_of(scope + (name,))
        expected = len(model.net.layers[name].state_dict())
        if expected == 0 and not arrays:
            continue
        if not arrays:
            raise CnnkitError(f"{where}: no weights for layer {name!r} ({layer.type})")
        try:
            model.set_layer_weights(name, arrays)
        except CnnkitError as e:
            raise CnnkitError(f"{where}: layer {name!r}: {e}") from None
