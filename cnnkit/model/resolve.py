"""The one resolver: what a model reference names, and the model it gives.

Every command and API that names a model (summary, train's --model, evaluate, predict, inspect,
plot-model, export, serve, `cnnkit.load`, `cnnkit.evaluate`, `cnnkit.Predictor`) reads it here,
so each accepts the same six kinds, explicitly prefixed as timm's `hf-hub:` or guessed where
only one kind fits:

    preset:NAME    a preset (`cnnkit presets`)             seed003-cnn
    run:DIR        a run directory: its best model         runs/fashion (holds config.json)
    saved:DIR      a saved model directory                 my_model (holds model.json)
    file:PATH      a model file, .yaml/.yml/.toml/.json    cnn.yaml
    keras:PATH     a Keras file, .keras/.h5/.hdf5          model.keras
    onnx:PATH      an exported ONNX file                   model.onnx

A reference that could be two things (a preset's name that is also a folder here) is refused
with the prefixed forms to choose from. An ONNX file is a graph, not a cnnkit model: it runs on
onnxruntime through cnnkit.Predictor, which predict, evaluate and serve use."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cnnkit.errors import CnnkitError, clipped, closest, one_of
from cnnkit.io.rundir import CONFIG, RunDir

KINDS = {"preset": "a preset name", "run": "a run directory (its best model)",
         "saved": "a saved model directory", "file": "a model file (.yaml, .yml, .toml, .json)",
         "keras": "a Keras file (.keras, .h5, .hdf5)", "onnx": "an ONNX file (.onnx)"}
SUFFIXES = {".yaml": "file", ".yml": "file", ".toml": "file", ".json": "file",
            ".keras": "keras", ".h5": "keras", ".hdf5": "keras", ".onnx": "onnx"}


@dataclass(frozen=True)
class Reference:
    """What a model reference names: `kind` (one of KINDS) and the preset name or path."""

    kind: str
    target: str

    def __str__(self):
        return self.target


# what a command's MODEL argument takes, in its --help
HELP = ("a preset, a run directory (its best model), a saved model directory, a model file "
        "(.yaml/.toml/.json), a Keras file (.keras/.h5) or an exported .onnx file; prefix one "
        "(preset:, run:, saved:, file:, keras:, onnx:) where its name could be two")


def valid_forms() -> str:
    return "; ".join(f"{kind}:... {what}" for kind, what in KINDS.items())


def parse_reference(ref) -> Reference:
    """The kind a reference names, from its prefix, else guessed where one kind fits."""
    text = os.fspath(ref) if isinstance(ref, os.PathLike) else ref
    if not isinstance(text, str) or not text:
        raise CnnkitError(f"model {clipped(ref)} is not a model reference; valid: {valid_forms()}")
    prefix, sep, rest = text.partition(":")
    if sep and prefix in KINDS:
        return Reference(prefix, rest)
    return Reference(guess_kind(text), text)


def named_kind(text: str) -> str | None:
    """The kind a reference's prefix or file suffix names, without reading the file system;
    None for a folder or a preset name, which only the file system and the presets tell."""
    prefix, sep, _ = text.partition(":")
    if sep and prefix in KINDS:
        return prefix
    return SUFFIXES.get(Path(text).suffix.lower())


def guess_kind(text: str) -> str:
    from cnnkit.model.presets import PRESETS

    path = Path(text)
    kinds = []
    if path.is_dir():  # a folder that is no run is read as a saved model, which says what
        kinds.append("run" if RunDir(path).is_run() else "saved")  # it lacks
    elif path.suffix.lower() in SUFFIXES:
        kinds.append(SUFFIXES[path.suffix.lower()])
    if text in PRESETS:
        kinds.append("preset")
    if len(kinds) == 1:
        return kinds[0]
    if kinds:
        raise CnnkitError(f"model {clipped(text)} is both {' and '.join(KINDS[k] for k in kinds)}"
                          f"; say which: {' or '.join(f'{k}:{text}' for k in kinds)}")
    raise CnnkitError(f"unknown model {clipped(text)}: not a preset, and here not a saved model "
                      f"directory, a run directory, nor a model, Keras or ONNX file; valid: "
                      f"{valid_forms()}; presets: {', '.join(PRESETS)}"
                      + (f"; did you mean {near!r}?" if (near := closest(text, PRESETS)) else ""))


def preset_name(ref) -> str | None:
    """The preset `ref` names (`preset:NAME`, or a preset's name that is no path here), else
    None; a run adapts a preset to its data, so it asks before building one."""
    from cnnkit.model.presets import PRESETS

    if not isinstance(ref, str):
        return None
    if ref.startswith("preset:"):
        name = ref.removeprefix("preset:")
        if name not in PRESETS:
            raise one_of("preset", name, PRESETS)
        return name
    return ref if ref in PRESETS and not Path(ref).exists() else None


def is_onnx_file(ref) -> bool:
    """Does `ref` name an ONNX file (`onnx:PATH` or PATH.onnx)? No file system is read."""
    return isinstance(ref, (str, os.PathLike)) and named_kind(os.fspath(ref)) == "onnx"


def open_model(ref, module=None, scale=None, cls=None):
    """(model, run directory or None) for anything that names a model: a built model (a
    Sequential, a user's module wrapped by cnnkit) as it is, a description dict, or a reference
    (above). `module`: an instance of your own nn.Module's class, for its saved weights or a run
    of it; `scale`: a Keras file's input scale (cnnkit.model.keras_files.input_scale); `cls`:
    the Sequential class to build (cnnkit.keras asks for its Keras-semantics one)."""
    if hasattr(ref, "layer_infos") or getattr(ref, "foreign", False):
        return ref, None
    if isinstance(ref, dict):
        from cnnkit.model.graph import model_from_config

        return model_from_config(ref, "model", cls), None
    reference = parse_reference(ref)
    if scale is not None and reference.kind != "keras":
        raise CnnkitError(f"scale={clipped(scale)} is for Keras files (.keras, .h5), which do "
                          f"not record how their inputs were scaled; {reference} records its "
                          "own preprocessing: load it without scale=")
    if module is not None and reference.kind not in ("run", "saved"):
        raise CnnkitError(f"module= is for the weights of your own nn.Module, in a run of it or "
                          f"a folder ModuleModel.save wrote; {reference} is "
                          f"{KINDS[reference.kind]}: load it without module=")
    return LOADERS[reference.kind](Path(reference.target), module=module, scale=scale, cls=cls)


def load_preset(name, **_):
    from cnnkit.model.presets import create_model

    return create_model(str(name)), None


def load_run(path, module=None, cls=None, **_):
    run = RunDir(path)
    if not run.is_run():
        raise CnnkitError(f"{path}: not a run directory (no {CONFIG}); valid: {valid_forms()}")
    if not run.has_model():
        raise CnnkitError(f"{path}: the run has no saved model yet (no completed epoch); "
                          f"continue it with cnnkit train --resume {path}")
    model, _ = load_saved(run.best, module=module, cls=cls)
    return model, path


def load_saved(path, module=None, cls=None, **_):
    from cnnkit.model.module import MODULE_FILE, load_module
    from cnnkit.model.saving import load_directory

    if module is not None or (path / MODULE_FILE).is_file():
        return load_module(path, module), None
    return load_directory(path, cls), None


def load_file(path, cls=None, **_):
    from cnnkit.io.bounded import read_structured
    from cnnkit.model.graph import model_from_config

    return model_from_config(read_structured(path), str(path), cls), None


def load_keras(path, scale=None, cls=None, **_):
    from cnnkit.model.keras_files import load_keras_file
    from cnnkit.model.sequential import Sequential

    return load_keras_file(path, cls or Sequential, scale=scale), None


def refuse_onnx(path, **_):
    raise CnnkitError(f"{path}: an ONNX file runs on onnxruntime through cnnkit.Predictor "
                      "(cnnkit predict, evaluate, serve), not as a cnnkit model; valid here: "
                      + "; ".join(f"{k}:... {w}" for k, w in KINDS.items() if k != "onnx"))


LOADERS = {"preset": load_preset, "run": load_run, "saved": load_saved, "file": load_file,
           "keras": load_keras, "onnx": refuse_onnx}
