"""A saved model is a directory: `model.json` (the description, input shape, class names,
preprocessing) and `weights.safetensors`. Never pickle. Written atomically as a whole."""
from __future__ import annotations

import json
from pathlib import Path

from cnnkit.errors import CnnkitError
from cnnkit.fsutil import atomic_dir

FORMAT = "cnnkit.model.sequential"
VERSION = 1
CONFIG_FILE, WEIGHTS_FILE = "model.json", "weights.safetensors"


def save_model(model, path, extra: dict | None = None) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    meta = {"format": FORMAT, "version": VERSION, "config": model.get_config(),
            "input_shape": list(model._require_input()), "class_names": model.class_names,
            "preprocessing": model.preprocessing, "dataset": getattr(model, "dataset", None),
            **(extra or {})}
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
    try:
        meta = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CnnkitError(f"{cfg_file}: corrupt JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CnnkitError(f"{cfg_file}: not a cnnkit model description (format should be {FORMAT!r})")
    return meta


def load(path):
    """Rebuild a saved model from its directory alone; outputs are identical to the saved one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from cnnkit.model.sequential import Sequential

    path = Path(path)
    meta = read_meta(path)
    model = Sequential.from_config(meta["config"], where=str(path / CONFIG_FILE))
    model.class_names = meta.get("class_names")
    model.preprocessing = check_preprocessing(meta.get("preprocessing") or model.preprocessing,
                                              model.input_shape[2], str(path / CONFIG_FILE))
    model.dataset = meta.get("dataset")
    weights_file = path / WEIGHTS_FILE
    if not weights_file.is_file():
        raise CnnkitError(f"{path}: missing {WEIGHTS_FILE}")
    try:
        state = load_file(str(weights_file))
    except (SafetensorError, OSError, ValueError) as e:
        raise CnnkitError(f"{weights_file}: unreadable weights ({e})") from None
    load_state(model.net, state, str(weights_file))
    model.net.eval()
    return model


def check_preprocessing(pre, channels: int, where: str) -> dict:
    """`preprocessing` from model.json: {"normalize": "unit"} or {"normalize": "standardize",
    "mean": [...], "std": [...]} with 1 or `channels` numbers each, std > 0."""
    valid = ('valid: {"normalize": "unit"} or {"normalize": "standardize", "mean": [...], '
             '"std": [...]}')
    if not isinstance(pre, dict) or pre.get("normalize") not in ("unit", "standardize"):
        raise CnnkitError(f"{where}: preprocessing {pre!r} is not understood; {valid}")
    if pre["normalize"] == "standardize":
        for key in ("mean", "std"):
            v = pre.get(key)
            ok = isinstance(v, list) and len(v) in (1, channels) and all(
                isinstance(a, (int, float)) and not isinstance(a, bool) for a in v)
            if not ok or (key == "std" and min(v) <= 0):
                count = "1 number" if channels == 1 else f"1 or {channels} numbers"
                raise CnnkitError(f"{where}: preprocessing {key}={v!r} is out of range; valid: "
                                  f"{count} (one per channel)"
                                  + (", each > 0" if key == "std" else ""))
    return pre


def load_state(net, state: dict, where: str) -> None:
    """Load a state dict, naming the first missing, unexpected or mis-shaped tensor."""
    expected = net.state_dict()
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


# -- Keras weight layout -------------------------------------------------------------------------
def keras_weights(module) -> list:
    """Weights as Keras stores them: conv kernel (kh, kw, in, out), dense kernel (in, out)."""
    from torch import nn

    w = module.weight.detach().cpu()
    if isinstance(module, nn.Conv2d):
        out = [w.permute(2, 3, 1, 0).numpy()]
    elif isinstance(module, nn.Linear):
        out = [w.t().numpy()]
    else:  # batch norm: gamma, beta, moving mean, moving variance
        return [t.detach().cpu().numpy() for t in
                (module.weight, module.bias, module.running_mean, module.running_var)]
    if module.bias is not None:
        out.append(module.bias.detach().cpu().numpy())
    return out


def set_keras_weights(module, weights: list, layer) -> None:
    import torch
    from torch import nn

    weights = [torch.as_tensor(w, dtype=torch.float32) for w in weights]
    if isinstance(module, nn.Conv2d):
        tensors = [weights[0].permute(3, 2, 0, 1)] + weights[1:]
        targets = [module.weight] + ([module.bias] if module.bias is not None else [])
    elif isinstance(module, nn.Linear):
        tensors = [weights[0].t()] + weights[1:]
        targets = [module.weight] + ([module.bias] if module.bias is not None else [])
    else:
        tensors = weights
        targets = [module.weight, module.bias, module.running_mean, module.running_var]
    if len(tensors) != len(targets):
        raise CnnkitError(f"{layer.type}: expected {len(targets)} weight arrays; received {len(tensors)}")
    with torch.no_grad():
        for target, value in zip(targets, tensors):
            if tuple(target.shape) != tuple(value.shape):
                raise CnnkitError(f"{layer.type}: weight of shape {tuple(value.shape)} does not fit "
                                  f"{tuple(target.shape)}")
            target.copy_(value)
