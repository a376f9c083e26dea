"""Model files: the same description as YAML, TOML or JSON.

    input_shape: [28, 28, 1]
    layers:
      - Conv2D: {filters: 32, kernel_size: 3, activation: relu}
      - Flatten: {}
      - Dense: {units: 10, activation: softmax}
"""
from __future__ import annotations

import json
from pathlib import Path

from cnnkit.errors import CnnkitError

MODEL_FILE_SUFFIXES = (".yaml", ".yml", ".toml", ".json")


def read_structured(path, what: str = "model file") -> object:
    """Parse a YAML/TOML/JSON file; a syntax error names the file and line."""
    path = Path(path)
    if path.suffix not in MODEL_FILE_SUFFIXES:
        raise CnnkitError(f"{path}: unknown {what} type {path.suffix!r}; valid: "
                          f"{', '.join(MODEL_FILE_SUFFIXES)}")
    if not path.is_file():
        raise CnnkitError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise CnnkitError(f"{path}: line {e.lineno}: {e.msg}") from None
    if path.suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise CnnkitError(f"{path}: {e}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise CnnkitError(f"{path}: {where}{problem}") from None


def load_model_file(path):
    from cnnkit.model.sequential import Sequential

    return Sequential.from_config(read_structured(path), where=str(path))


def resolve_model(spec):
    """A model named on the command line: preset name, model file, or saved model directory;
    or a model description (the dict `Sequential.get_config()` returns)."""
    from cnnkit.model.presets import PRESETS, create_model

    if isinstance(spec, dict):
        from cnnkit.model.sequential import Sequential

        return Sequential.from_config(spec, where="model")
    path = Path(spec)
    if path.is_dir():
        from cnnkit.model.saving import load

        return load(path)
    if path.suffix in MODEL_FILE_SUFFIXES:
        return load_model_file(path)
    if spec in PRESETS:
        return create_model(spec)
    raise CnnkitError(f"unknown model {spec!r}: not a preset, a model file ({', '.join(MODEL_FILE_SUFFIXES)}) "
                      f"or a saved model directory; presets: {', '.join(PRESETS)}")
