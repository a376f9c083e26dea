"""A search space: what to vary, over which run, towards which metric.

    base: {recipe: fast, epochs: 3}            # a RunSpec (flat form), or a run file's path
    space:
      lr: {log_uniform: [1e-4, 1e-2]}
      batch_size: {choice: [64, 128, 256]}
      label_smoothing: {uniform: [0.0, 0.2]}
      augment.rotation_range: {int: [0, 20]}   # one augmentation argument
      layers.conv2d.filters: {choice: [16, 32]}  # a layer's argument, by name or by index
    objective: {metric: val_accuracy, direction: maximize}

A parameter is any RunSpec field (`model: {choice: [fast-cnn, seed003-cnn]}` compares
architectures), `augment.NAME`, or `layers.NAME.ARG` / `layers.INDEX.ARG` (the base model's
description, with that argument changed). Distributions: `choice: [...]` (a bare list too),
`uniform: [low, high]`, `log_uniform: [low, high]`, `int: [low, high]` (both ends included,
optional `step`), `log_int: [low, high]`.

Everything is checked here, before anything is written: each name, each range, and each value
at its ends (every choice, low and high) applied to the base run and resolved as a run would be.
Stdlib and cnnkit only; Optuna's distributions are built on demand (`distribution`).
"""
from __future__ import annotations

import copy
import itertools
import math
import re
from dataclasses import dataclass, field

from cnnkit.errors import CnnkitError, one_of, shown

KINDS = ("choice", "uniform", "log_uniform", "int", "log_int")
# Run fields a search does not vary: where and how verbosely a trial runs is the search's.
NOT_SEARCHED = ("out", "artifacts", "verbose", "fold")
# What a run produces: per-epoch values (history.csv) and final figures (metrics.json).
HISTORY_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
FINAL_METRICS = ("test_accuracy", "test_loss", "best_val_loss", "best_val_accuracy",
                 "final_loss", "final_accuracy", "wall_time_s", "result_time_s", "train_time_s")
METRICS = HISTORY_METRICS + FINAL_METRICS
DIRECTIONS = ("maximize", "minimize")
MAX_GRID = 10_000


@dataclass
class Param:
    name: str
    kind: str
    values: list  # choice: the options; others: [low, high]
    step: float | None = None

    def grid(self) -> list:
        if self.kind == "choice":
            return list(self.values)
        if self.kind == "int":
            low, high = self.values
            return list(range(low, high + 1, int(self.step or 1)))
        raise CnnkitError(f"grid search needs finite values; {self.name} is {self.kind} "
                          f"{self.values}: give it as choice: [...] or int: [low, high]")

    def ends(self) -> list:
        """The values whose validity stands for all (every choice; low and high)."""
        return list(self.values)

    def distribution(self):
        import optuna.distributions as d

        low, high = (self.values + [None, None])[:2]
        if self.kind == "choice":
            return d.CategoricalDistribution(self.values)
        if self.kind in ("int", "log_int"):
            return d.IntDistribution(low, high, log=self.kind == "log_int",
                                     step=int(self.step or 1))
        return d.FloatDistribution(float(low), float(high), log=self.kind == "log_uniform",
                                   step=self.step)

    def to_dict(self) -> dict:
        return {self.kind: self.values, **({"step": self.step} if self.step else {})}


@dataclass
class Space:
    base: dict  # the explicit fields of the base RunSpec
    params: list[Param]
    metric: str = "val_accuracy"
    direction: str = "maximize"
    where: str = "space"
    notes: list[str] = field(default_factory=list)

    def base_spec(self):
        from cnnkit.runs.spec import RunSpec

        return RunSpec(**self.base)

    def grid(self) -> list[dict]:
        """Every point of the grid, in a fixed order (the first parameter slowest)."""
        names = [p.name for p in self.params]
        return [dict(zip(names, combo)) for combo in itertools.product(*(p.grid() for p in self.params))]

    def grid_size(self) -> int:
        return math.prod(len(p.grid()) for p in self.params)

    def distributions(self) -> dict:
        return {p.name: p.distribution() for p in self.params}

    def to_dict(self) -> dict:
        """The space as its file would say it (recorded with the study)."""
        return {"base": self.base, "space": {p.name: p.to_dict() for p in self.params},
                "objective": {"metric": self.metric, "direction": self.direction}}

    # -- a trial's run ---------------------------------------------------------------------------
    def apply(self, params: dict, spec=None):
        """The base RunSpec (or `spec`) with `params` set: fields, augment.X, layers.L.ARG."""
        spec = spec if spec is not None else self.base_spec()
        fields, augment, layers = {}, {}, {}
        for name, value in params.items():
            head, _, rest = name.partition(".")
            if head == "augment" and rest:
                augment[rest] = value
            elif head == "layers" and rest:
                layers[rest] = value
            else:
                fields[name] = value
        spec = spec.replace(**fields)
        if augment:
            spec = spec.replace(augment={**(spec.augment or {}), **augment})
        if layers:
            spec = spec.replace(model=_edit_layers(self.model_description(spec), layers))
        return spec

    def model_description(self, spec) -> dict:
        """The run's model as a description (a preset built for the run's data), to edit."""
        if isinstance(spec.model, dict):
            return copy.deepcopy(spec.model)
        from cnnkit.model.resolve import preset_name

        resolved = spec.resolved()  # the model may come from the recipe
        if isinstance(resolved.model, dict):
            return copy.deepcopy(resolved.model)
        if preset_name(resolved.model):
            from cnnkit.data import load_dataset
            from cnnkit.model.presets import create_model

            ds = load_dataset(resolved.dataset, data_dir=resolved.data_dir,
                              channels=resolved.channels, size=resolved.image_size,
                              label_column=resolved.label_column, image_root=resolved.image_root)
            model = create_model(preset_name(resolved.model), input_shape=ds.image_shape,
                                 num_classes=ds.num_classes)
        else:
            from cnnkit.model.files import resolve_model

            model = resolve_model(resolved.model)
        return model.get_config()


def _entry_names(desc: dict) -> list[str]:
    """The name of each entry of desc["layers"], in order: a layer's index is its entry's
    position (a graph file's `input_shape` key adds an input layer that has no entry)."""
    from cnnkit.model.graph import model_from_config

    names = model_from_config(desc).layer_names()
    return names[len(names) - len(desc["layers"]):]


def _edit_layers(desc: dict, changes: dict) -> dict:
    names = _entry_names(desc)
    for key, value in changes.items():
        layer, _, arg = key.rpartition(".")
        index = _layer_index(layer, names)
        (type_name, args), = desc["layers"][index].items()
        desc["layers"][index] = {type_name: {**(args or {}), arg: value}}
    return desc


def _layer_index(layer: str, names: list[str]) -> int:
    if layer.isdigit() or (layer.startswith("-") and layer[1:].isdigit()):
        i = int(layer)
        if not -len(names) <= i < len(names):
            raise CnnkitError(f"layers.{layer}: the model has {len(names)} layers; valid: an "
                              f"index 0..{len(names) - 1} or a name: {', '.join(names)}")
        return i % len(names)
    if layer not in names:
        raise one_of("layer", layer, names)
    return names.index(layer)


# -- reading and checking ----------------------------------------------------------------------
def load_space(source, where: str | None = None) -> Space:
    """A Space from a file (YAML/TOML/JSON) or the mapping it holds; every check done."""
    from pathlib import Path

    if isinstance(source, Space):
        return source
    if isinstance(source, (str, Path)):
        from cnnkit.io.bounded import read_structured

        where = where or str(source)
        data = read_structured(source, what="search space file")
    else:
        data, where = source, where or "space"
    return check_space(parse_space(data, where))


def parse_space(data, where: str) -> Space:
    from cnnkit.runs.spec import RunSpec

    if not isinstance(data, dict):
        raise CnnkitError(f"{where}: expected a mapping with base, space and objective; "
                          f"received {type(data).__name__}")
    unknown = [k for k in data if k not in ("base", "space", "objective")]
    if unknown:
        raise CnnkitError(f"{where}: " + str(one_of("key", unknown[0], ("base", "space", "objective"))))
    base = data.get("base") or {}
    if isinstance(base, str):  # a run file (a run's config.json too)
        base = RunSpec.from_file(base).explicit()
    if isinstance(base, dict):
        base = {k: _number(v) for k, v in base.items()}
    base = RunSpec.from_dict(base, where=f"{where}: base").explicit()
    base.pop("out", None)
    space = data.get("space")
    if not isinstance(space, dict) or not space:
        raise CnnkitError(f"{where}: 'space' must be a non-empty mapping of parameter: "
                          "distribution (e.g. lr: {log_uniform: [1e-4, 1e-2]})")
    params = [_parse_param(str(name), value, where) for name, value in space.items()]
    objective = data.get("objective") or {}
    if not isinstance(objective, dict) or set(objective) - {"metric", "direction"}:
        raise CnnkitError(f"{where}: objective must be a mapping {{metric: ..., direction: "
                          f"maximize|minimize}}; received {shown(objective)}")
    metric = objective.get("metric", "val_accuracy")
    direction = objective.get("direction") or default_direction(metric)
    return Space(base=base, params=params, metric=metric, direction=direction, where=where)


def default_direction(metric) -> str:
    return "maximize" if isinstance(metric, str) and "acc" in metric else "minimize"


_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _number(v):
    """YAML 1.1 (PyYAML) reads `1e-4` as a string (it wants `1.0e-4`): such a string is the
    number everyone means by it."""
    return float(v) if isinstance(v, str) and _SCIENTIFIC.fullmatch(v) else v


def _parse_param(name: str, value, where: str) -> Param:
    at = f"{where}: {name}"
    if isinstance(value, list):
        value = {"choice": value}
    if isinstance(value, dict):
        value = {k: [_number(x) for x in v] if isinstance(v, list) else _number(v)
                 for k, v in value.items()}
    if not isinstance(value, dict):
        raise CnnkitError(f"{at}: expected a distribution such as {{choice: [...]}}, "
                          f"{{uniform: [low, high]}}; received {shown(value)}")
    kinds = [k for k in value if k != "step"]
    if len(kinds) != 1 or kinds[0] not in KINDS or set(value) - set(KINDS) - {"step"}:
        bad = next((k for k in value if k not in KINDS and k != "step"), kinds[:1] or value)
        raise CnnkitError(f"{at}: " + str(one_of("distribution", bad, KINDS)))
    kind, values, step = kinds[0], value[kinds[0]], value.get("step")
    if not isinstance(values, list) or not values:
        raise CnnkitError(f"{at}: {kind} needs a non-empty list; received {shown(values)}")
    if kind == "choice":
        if len(set(map(repr, values))) != len(values):
            raise CnnkitError(f"{at}: choice {shown(values)} repeats a value; valid: distinct values")
        if not all(v is None or isinstance(v, (bool, int, float, str)) for v in values):
            raise CnnkitError(f"{at}: choice values must be numbers, strings, true/false or "
                              f"null; received {shown(values)}")
        return Param(name, kind, values)
    number = int if kind in ("int", "log_int") else (int, float)
    if len(values) != 2 or not all(isinstance(v, number) and not isinstance(v, bool)
                                   for v in values):
        raise CnnkitError(f"{at}: {kind} needs [low, high] ({'integers' if number is int else 'numbers'}); "
                          f"received {shown(values)}")
    low, high = values
    if not low < high:
        raise CnnkitError(f"{at}: {kind} [{low}, {high}] is an empty range; valid: low < high")
    if kind.startswith("log") and low <= 0:
        raise CnnkitError(f"{at}: {kind} [{low}, {high}] needs low > 0 (a logarithmic range)")
    if step is not None and (isinstance(step, bool) or not isinstance(step, number) or step <= 0
                             or kind.startswith("log")):
        raise CnnkitError(f"{at}: step {shown(step)} is not valid; valid: a number > 0 "
                          "(not with log ranges)")
    return Param(name, kind, values, step)


def check_space(space: Space) -> Space:
    """Every name and every end value, tried on the base run (no training, no writing)."""
    from cnnkit.runs.spec import RunSpec

    where = space.where
    if space.metric not in METRICS:
        raise CnnkitError(f"{where}: objective metric {shown(space.metric)} is not produced by "
                          f"a run; valid: {', '.join(METRICS)}")
    if space.direction not in DIRECTIONS:
        raise CnnkitError(f"{where}: objective " + str(one_of("direction", space.direction,
                                                              DIRECTIONS)))
    base = space.base_spec()
    try:
        resolved = base.resolved()
    except CnnkitError as e:
        raise CnnkitError(f"{where}: base: {e}") from None
    if space.metric.startswith("val_") or space.metric.startswith("best_val"):
        if not resolved.val_split and not resolved.val_from_test:
            space.base["val_split"] = 0.2
            space.notes.append(f"objective {space.metric} needs validation data: each trial holds "
                               "out val_split 0.2 of its training data (set base.val_split to "
                               "choose another)")
    fields = [f for f in RunSpec.fields() if f not in NOT_SEARCHED]
    for p in space.params:
        head, _, rest = p.name.partition(".")
        if head == "augment" and rest:
            from cnnkit.runs.prepare import check_augment

            for v in p.ends():
                _try(where, p, v, lambda v=v: check_augment({rest: v}))
        elif head == "layers" and rest:
            layer, _, arg = rest.rpartition(".")
            if not layer or not arg:
                raise CnnkitError(f"{where}: {p.name}: valid: layers.NAME.ARG or "
                                  "layers.INDEX.ARG (e.g. layers.conv2d.filters)")
            _check_layer_param(space, p, layer, arg)
        elif p.name not in fields:
            raise CnnkitError(f"{where}: " + str(one_of("option", p.name, fields + [
                "augment.NAME", "layers.NAME.ARG", "layers.INDEX.ARG"])))
        else:
            for v in p.ends():
                _try(where, p, v, lambda v=v: space.apply({p.name: v}).resolved())
    _check_models(space)
    return space


MODEL_FIELDS = ("model", "dataset", "recipe", "data_dir", "init_from", "freeze", "image_size",
                "channels", "label_column", "image_root")


def _check_models(space: Space) -> None:
    """The base run's data loads and its model fits it, and so does every model a parameter
    can make: a misspelt preset or a layer too large for the images is refused now, not in
    every trial."""
    from cnnkit.runs.prepare import build_model, load_splits

    def check(spec, what: str) -> None:
        try:
            resolved = spec.resolved()
            key = (resolved.dataset, resolved.data_dir, resolved.image_size, resolved.channels,
                   resolved.label_column, resolved.image_root,
                   # folders take the model's size
                   str(resolved.model) if resolved.dataset.startswith("folder:") else None)
            if key not in loaded:
                loaded[key] = load_splits(resolved)[0]
            build_model(resolved, loaded[key])
        except CnnkitError as e:
            raise CnnkitError(f"{space.where}: {what}: {e}") from None

    loaded: dict = {}
    check(space.base_spec(), "base")
    for p in space.params:
        if p.name.split(".")[0] in MODEL_FIELDS + ("layers",):
            for v in p.ends():
                check(space.apply({p.name: v}), f"{p.name} = {shown(v)}")


def _check_layer_param(space: Space, p: Param, layer: str, arg: str) -> None:
    import inspect

    from cnnkit.layers.core import LAYER_TYPES
    from cnnkit.model.graph import model_from_config

    where = space.where
    try:
        desc = space.model_description(space.base_spec())
    except CnnkitError as e:
        raise CnnkitError(f"{where}: {p.name}: {e}") from None
    names = _entry_names(desc)
    try:
        index = _layer_index(layer, names)
    except CnnkitError as e:
        raise CnnkitError(f"{where}: {p.name}: {e}") from None
    (type_name, _), = desc["layers"][index].items()
    valid = [a for a in inspect.signature(LAYER_TYPES[type_name]).parameters
             if a not in ("self", "name", "args", "kwargs")]
    if arg not in valid:
        raise CnnkitError(f"{where}: {p.name}: {type_name} layer {names[index]!r} has no "
                          f"argument {shown(arg)}; valid: {', '.join(valid)}")
    for v in p.ends():
        _try(where, p, v, lambda v=v: model_from_config(
            _edit_layers(copy.deepcopy(desc), {f"{index}.{arg}": v})))


def _try(where: str, p: Param, value, check) -> None:
    try:
        check()
    except CnnkitError as e:
        raise CnnkitError(f"{where}: {p.name} = {shown(value)} (from {p.kind} "
                          f"{shown(p.values)}): {e}") from None
