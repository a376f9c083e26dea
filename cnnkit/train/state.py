"""Nested training state ↔ (JSON, safetensors), with no pickle.

A trainer's state is a tree of dicts and lists holding numbers, strings and tensors (optimizer
moments, RNG states, best weights). `pack` lifts every tensor into a flat name → tensor dict
(saved with safetensors) and leaves a JSON-able tree with `{"__tensor__": name}` in its place.
Dicts with non-string keys (the optimizer's per-parameter state is keyed by int) and tuples
are tagged so that `unpack` gives back exactly the same structure.

Beside the three files, `SHA256SUMS` (the format `sha256sum -c` reads) holds each file's
SHA-256 when it was written: a state changed since (a file edited by hand, a damaged disk) is
refused in one line rather than resumed as if it were the run's own.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from cnnkit.errors import CnnkitError
from cnnkit.fsutil import atomic_dir

STATE_JSON, STATE_TENSORS, MODEL_TENSORS = "state.json", "state.safetensors", "model.safetensors"
CHECKSUMS = "SHA256SUMS"


def pack(obj, tensors: dict[str, torch.Tensor], path: str = "s"):
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": path}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: pack(v, tensors, f"{path}.{k}") for k, v in obj.items()}
        return {"__items__": [[k, pack(v, tensors, f"{path}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [pack(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [pack(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {path} in training state")


def unpack(obj, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            if not isinstance(obj["__tensor__"], str) or obj["__tensor__"] not in tensors:
                raise _MissingTensor(obj["__tensor__"])
            return tensors[obj["__tensor__"]]
        if "__items__" in obj:
            return {k: unpack(v, tensors) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(unpack(v, tensors) for v in obj["__tuple__"])
        return {k: unpack(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unpack(v, tensors) for v in obj]
    return obj


def write_state(directory, model_state: dict[str, torch.Tensor], state: dict) -> Path:
    """Write the model weights and the rest of the state as one directory, atomically: a
    crash at any moment leaves either the previous complete state or the new one."""
    tensors: dict[str, torch.Tensor] = {}
    tree = pack(state, tensors)
    weights = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model_state.items()}
    with atomic_dir(directory) as tmp:
        save_file(weights, str(tmp / MODEL_TENSORS))
        save_file(tensors, str(tmp / STATE_TENSORS))
        (tmp / STATE_JSON).write_text(json.dumps(tree, indent=1) + "\n")
        (tmp / CHECKSUMS).write_text("".join(f"{_sha256(tmp / n)}  {n}\n" for n in
                                             (STATE_JSON, STATE_TENSORS, MODEL_TENSORS)))
    return Path(directory)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def check_checksums(directory: Path) -> None:
    """Every file SHA256SUMS names has the SHA-256 it was written with. A state from before
    cnnkit wrote SHA256SUMS has none to check."""
    path = directory / CHECKSUMS
    if not path.is_file():
        return
    with path.open("rb") as f:
        text = f.read(4096).decode("utf-8", errors="replace")  # three lines of ~100 bytes
    for line in text.splitlines():
        digest, _, name = line.partition("  ")
        if name not in (STATE_JSON, STATE_TENSORS, MODEL_TENSORS):
            raise CnnkitError(f"{path}: corrupt training state (a line naming {name!r})")
        if _sha256(directory / name) != digest:
            raise CnnkitError(f"{directory / name}: does not match its checksum in {CHECKSUMS} "
                              "(changed since the run wrote it); a run resumes only the state "
                              "it saved")


class _MissingTensor(Exception):
    """A `{"__tensor__": name}` whose name state.safetensors does not hold."""


def read_state(directory) -> tuple[dict[str, torch.Tensor], dict]:
    directory = Path(directory)
    old = directory.with_name(f".{directory.name}.old")
    if not directory.exists() and old.is_dir():
        directory = old  # killed between atomic_dir's two renames: the previous state is whole
    files = [directory / n for n in (STATE_JSON, STATE_TENSORS, MODEL_TENSORS)]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise CnnkitError(f"{directory} is not a training state directory "
                          f"(missing {', '.join(missing)})")
    from cnnkit.errors import clipped
    from cnnkit.io.bounded import MAX_STATE_BYTES, read_bounded
    from cnnkit.io.tensors import read_safetensors
    from cnnkit.model.saving import check_finite

    check_checksums(directory)
    # inf is a number a state holds by right (EarlyStopping's best before its first epoch)
    tree = read_bounded(files[0], "json", "training state", max_bytes=MAX_STATE_BYTES,
                        nonfinite=True, label="corrupt training state")
    tensors = read_safetensors(files[1], "training state")
    weights = read_safetensors(files[2], "training state")
    if not isinstance(tree, dict):
        raise CnnkitError(f"{files[0]}: corrupt training state (not a mapping)")
    for key in ("epoch", "seed"):  # what a resumed run counts and draws from
        value = tree.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CnnkitError(f"{files[0]}: corrupt training state ({key}={clipped(value)}; "
                              "valid: an integer >= 0)")
    check_finite(weights, str(files[2]))  # resuming NaN weights would only train NaN
    try:
        return weights, unpack(tree, tensors)
    except _MissingTensor as e:
        raise CnnkitError(f"{files[0]}: corrupt training state (tensor {clipped(e.args[0])} is "
                          f"not in {STATE_TENSORS})") from None
    except (TypeError, ValueError, KeyError, AttributeError):  # a tag (__items__, __tuple__)
        # holding something pack never writes: the file was edited or damaged
        raise CnnkitError(f"{files[0]}: corrupt training state (a malformed __items__ or "
                          "__tuple__ entry)") from None


# What `load_state` reads from state.json, and the types it needs (JSON types after unpacking).
_STATE_KEYS = {"config": dict, "optimizer": dict, "history": dict, "callbacks": dict,
               "epoch": int, "seed": int, "stop_training": bool,
               "stop_reason": (str, type(None))}


def check_state_keys(state: dict, where: str, averaging: bool) -> None:
    """One line naming the file and the key for a state.json missing a key or holding the
    wrong type there (a file edited by hand or written by another program)."""
    from cnnkit.errors import clipped

    keys = dict(_STATE_KEYS, **({"weight_average": dict} if averaging else {}))
    for key, kind in keys.items():
        if key not in state:
            raise CnnkitError(f"{where}: corrupt training state (no '{key}' key)")
        if not isinstance(state[key], kind):
            wanted = " or ".join("null" if k is type(None) else k.__name__
                                 for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise CnnkitError(f"{where}: corrupt training state ('{key}' is "
                              f"{clipped(state[key])}; valid: {wanted})")
