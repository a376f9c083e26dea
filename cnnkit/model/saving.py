"""A saved model is a directory: `model.json` (the description, input shape, class names,
preprocessing) and `weights.safetensors`. Never pickle. Written atomically as a whole.

Weights are keyed by layer name, `layers.<name>.<key>` (see cnnkit.layers.nn.Net). Files from
before layers owned their weights by name are keyed by position, `blocks.<N>.<key>`;
`load_state` reads both, so old models and training states load to identical outputs."""
from __future__ import annotations

import json
import math
from pathlib import Path

from cnnkit.errors import CnnkitError
from cnnkit.fsutil import atomic_dir
from cnnkit.errors import clipped, printable

FORMAT = "cnnkit.model.sequential"
VERSION = 1
CONFIG_FILE, WEIGHTS_FILE = "model.json", "weights.safetensors"
FLOAT32_MAX = 3.4028234663852886e38


def save_model(model, path, extra: dict | None = None) -> Path:
    """A directory, or one Keras file for a path ending in .keras or .h5 (cnnkit.model.keras_files)."""
    from safetensors.torch import save_file

    path = Path(path)
    check_class_names(model.class_names, model, str(path))  # what load would refuse is not written
    if path.suffix.lower() in (".keras", ".h5") and not path.is_dir():
        from cnnkit.model.keras_writing import save_keras_file

        return save_keras_file(model, path)
    from cnnkit.model.keras_writing import compile_config

    compiled = compile_config(model)  # cnnkit.keras's compile, restored by its load_model
    meta = {"format": FORMAT, "version": VERSION, "config": model.get_config(),
            "input_shape": list(model._require_input()), "class_names": model.class_names,
            "preprocessing": model.preprocessing, "dataset": getattr(model, "dataset", None),
            **({"compile_config": compiled} if compiled else {}), **(extra or {})}
    # contiguous copies: channels_last weights are views safetensors cannot store as-is
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
    with atomic_dir(path) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE))
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return path


def read_meta(path) -> dict:
    path = Path(path)
    if not path.is_dir():
        raise CnnkitError(f"{path}: not a saved model directory (expected a folder with "
                          f"{CONFIG_FILE} and {WEIGHTS_FILE})")
    cfg_file = path / CONFIG_FILE
    if not cfg_file.is_file():
        raise CnnkitError(f"{path}: missing {CONFIG_FILE}; not a saved cnnkit model")
    from cnnkit.io.bounded import read_bounded

    meta = read_bounded(cfg_file, "json", "saved model description", label="corrupt JSON")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CnnkitError(f"{cfg_file}: not a cnnkit model description (format should be {FORMAT!r})")
    return check_meta(meta, cfg_file)


# the keys of model.json that loading reads, and what each must be
META_KEYS = {"config": (dict, "a mapping (the model description)"),
             "class_names": (list, "a list of class names, or null"),
             "dataset": (str, "the name of a dataset, or null")}


def check_meta(meta: dict, where) -> dict:
    """Each key `load` reads, of the type it needs: a wrong one is named, not a KeyError."""
    if "config" not in meta:
        raise CnnkitError(f"{where}: missing key 'config' (the model description)")
    for key, (kind, valid) in META_KEYS.items():
        value = meta.get(key)
        if not (isinstance(value, kind) or (value is None and key != "config")):
            raise CnnkitError(f"{where}: {key}={clipped(value)} is not understood; valid: {valid}")
    names = meta.get("class_names")
    if names is not None and not all(isinstance(n, str) for n in names):
        raise CnnkitError(f"{where}: class_names={clipped(names)} is not understood; valid: a "
                          "list of strings")
    return meta


def load(path, cls=None, module=None, scale=None):
    """`cnnkit.load`: the model any reference names (cnnkit.model.resolve: a run directory's
    best model, a saved model directory, a Keras file, a model file, a preset), rebuilt from
    files alone; outputs are identical to the saved one. `cls`: the Sequential class to build
    (cnnkit.keras.models.load_model asks for its Keras-semantics one). `module`: for the weights
    of your own nn.Module (a run of `cnnkit.fit(CNN(), ...)`), an instance of its class to load
    them into (cnnkit.model.module.load_module). `scale`: for a Keras file, what 8-bit pixels
    are multiplied by before the model (1/255, the default where the file does not record it,
    or 1 for a model trained on raw 0-255 pixels)."""
    from cnnkit.model.resolve import open_model

    return open_model(path, module=module, scale=scale, cls=cls)[0]


def load_directory(path, cls=None):
    """A saved model directory (model.json + weights.safetensors) rebuilt as a `cls`."""
    from cnnkit.io.tensors import read_safetensors
    from cnnkit.model.graph import model_from_config

    path = Path(path)
    meta = read_meta(path)
    where = str(path / CONFIG_FILE)
    model = model_from_config(meta["config"], where, cls)
    model.class_names = check_class_names(meta.get("class_names"), model, where)
    model.preprocessing = check_preprocessing(meta.get("preprocessing") or model.preprocessing,
                                              model.input_shape[2], where)
    model.dataset = meta.get("dataset")
    model.saved_compile_config = meta.get("compile_config")
    weights_file = path / WEIGHTS_FILE
    if not weights_file.is_file():
        raise CnnkitError(f"{path}: missing {WEIGHTS_FILE}")
    state = read_safetensors(weights_file)
    check_finite(state, str(weights_file))
    load_state(model.net, state, str(weights_file))
    model.net.eval()
    return model


def check_class_names(names, model, where: str):
    """One name per class the output stands for (two for one sigmoid unit), or none at all;
    each made safe to show (errors.printable)."""
    if names is not None and not (isinstance(names, list)
                                  and all(isinstance(n, str) for n in names)):
        raise CnnkitError(f"{where}: class_names={clipped(names)}; valid: a list of names, or null")
    out = model.output_shape
    if names is not None and len(out) == 1:
        from cnnkit.model.outputs import class_count

        count = class_count(out[0])
        if len(names) != count:
            raise CnnkitError(f"{where}: class_names has {len(names)} names but the model's "
                              f"output stands for {count} classes; valid: {count} names, or null")
    return None if names is None else [printable(n) for n in names]


def check_finite(tensors: dict, where: str) -> None:
    """Refuse weights holding NaN or infinity, naming the first such tensor: such a model's
    every prediction would be NaN, silently. One pass over the weights, once per load."""
    import torch

    for key, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CnnkitError(f"{where}: tensor {clipped(key)} holds NaN or infinity; a model "
                              "with non-finite weights cannot predict (was it saved from a run "
                              "whose loss diverged?)")


def check_preprocessing(pre, channels: int, where: str) -> dict:
    """`preprocessing` from model.json: {"normalize": "unit"} or {"normalize": "standardize",
    "mean": [...], "std": [...]} with 1 or `channels` numbers each, std > 0."""
    valid = ('valid: {"normalize": "unit"} or {"normalize": "standardize", "mean": [...], '
             '"std": [...]}')
    if not isinstance(pre, dict) or pre.get("normalize") not in ("unit", "standardize"):
        raise CnnkitError(f"{where}: preprocessing {clipped(pre)} is not understood; {valid}")
    if pre["normalize"] == "standardize":
        for key in ("mean", "std"):
            v = pre.get(key)
            ok = isinstance(v, list) and len(v) in (1, channels) and all(
                isinstance(a, (int, float)) and not isinstance(a, bool) and _finite(a) for a in v)
            if not ok or (key == "std" and min(v) <= 0):
                count = "1 number" if channels == 1 else f"1 or {channels} numbers"
                raise CnnkitError(f"{where}: preprocessing {key}={clipped(v)} is out of range; "
                                  f"valid: {count} (one per channel), finite"
                                  + (", each > 0" if key == "std" else ""))
    return pre


def _finite(x) -> bool:
    """A number a float32 network can use: not NaN, infinity, or past float32's range."""
    try:
        return math.isfinite(x) and abs(x) <= FLOAT32_MAX
    except OverflowError:  # an int past float64's
        return False


def load_state(net, state: dict, where: str) -> None:
    """Load a state dict, naming the first missing, unexpected or mis-shaped tensor."""
    expected = net.state_dict()
    state = renamed_from_positions(state, expected)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise CnnkitError(f"{where}: weights do not match the model: missing {missing[0]!r}"
                          f" ({len(missing)} missing)")
    if unexpected:
        raise CnnkitError(f"{where}: weights do not match the model: unexpected {unexpected[0]!r}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CnnkitError(f"{where}: weights do not match the model: {key!r} has shape "
                              f"{tuple(value.shape)}, the model needs {tuple(expected[key].shape)}")
    net.load_state_dict(state)


def renamed_from_positions(state: dict, expected: dict) -> dict:
    """Old keys `blocks.<N>.<key>` (N counted every torch module, with weights or not) as
    `layers.<name>.<key>`: the blocks in increasing N are the layers with weights in order, each
    keeping its own keys (`conv.weight`, `running_mean`). Any other state comes back as it was,
    and a mismatch is left for `load_state` to name."""
    old: dict[int, dict] = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        index, _, suffix = rest.partition(".")
        if head != "blocks" or not index.isdigit() or not suffix:
            return state
        old.setdefault(int(index), {})[suffix] = value
    layers: dict[str, list[str]] = {}  # name -> its keys, in the network's (layer) order
    for key in expected:
        head, _, rest = key.partition(".")
        name, _, suffix = rest.partition(".")
        if head != "layers" or not suffix:
            return state
        layers.setdefault(name, []).append(suffix)
    if not old or len(old) != len(layers):
        return state
    return {f"layers.{name}.{suffix}": value
            for name, (_, group) in zip(layers, sorted(old.items()))
            for suffix, value in group.items()}


# -- Keras weight layout -------------------------------------------------------------------------
def _core(module):
    """The Conv2d, Linear or BatchNorm that holds all of a layer's weights, if one does."""
    from torch import nn

    kinds = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)
    cores = [m for m in module.modules() if isinstance(m, kinds)]
    if len(cores) == 1 and len(cores[0].state_dict()) == len(module.state_dict()):
        return cores[0]
    return None


def _keras_layout(module) -> list:
    """Per weight, in Keras's order, (tensor, shape, order): Keras's array is
    tensor.reshape(shape).permute(order). A module with a layout of its own (a depthwise
    kernel (kh, kw, in, multiplier)) says so by a `keras_layout()` method (cnnkit.layers.nn);
    otherwise conv kernel (kh, kw, in, out), dense kernel (in, out), batch norm gamma, beta,
    moving mean and variance, or any other layer's floating-point tensors as they are."""
    from torch import nn

    if hasattr(module, "keras_layout"):
        return module.keras_layout()
    core = _core(module)
    if core is None:
        tensors = [t for t in module.state_dict().values() if t.is_floating_point()]
    elif isinstance(core, (nn.Conv2d, nn.Linear)):
        w = core.weight
        order = (2, 3, 1, 0) if isinstance(core, nn.Conv2d) else (1, 0)
        bias = [core.bias] if core.bias is not None else []
        return [(w, tuple(w.shape), order)] + _keras_layout_of(bias)
    else:
        tensors = [core.weight, core.bias, core.running_mean, core.running_var]
    return _keras_layout_of(tensors)


def _keras_layout_of(tensors) -> list:
    return [(t, tuple(t.shape), tuple(range(t.dim()))) for t in tensors]


def keras_weights(module) -> list:
    """A layer's weights as Keras stores them (see _keras_layout). Copies, as Keras's
    `get_weights` gives: later training does not change them."""
    return [t.detach().cpu().reshape(shape).permute(order).numpy().copy()
            for t, shape, order in _keras_layout(module)]


def set_keras_weights(module, weights: list, layer) -> None:
    import numpy as np
    import torch

    layout = _keras_layout(module)
    if len(weights) != len(layout):
        raise CnnkitError(f"{layer.type}: expected {len(layout)} weight arrays; received {len(weights)}")
    with torch.no_grad():
        for (target, shape, order), w in zip(layout, weights):
            keras_shape = tuple(shape[i] for i in order)
            # compared before the array is read: an HDF5 dataset may claim terabytes
            given = tuple(w.shape) if hasattr(w, "shape") else np.shape(w)
            if given != keras_shape:
                raise CnnkitError(f"{layer.type}: weight of shape {given} does not fit "
                                  f"{keras_shape}")
            try:
                value = torch.as_tensor(np.asarray(w), dtype=torch.float32)
            except (OSError, TypeError, ValueError) as e:  # a damaged dataset, not numbers
                raise CnnkitError(f"{layer.type}: unreadable weight ({clipped(e, quote=False)})"
                                  ) from None
            back = sorted(range(len(order)), key=order.__getitem__)  # the inverse permutation
            target.copy_(value.permute(back).reshape(target.shape))
