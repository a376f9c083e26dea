"""The registry model files (TOML/YAML, saved models) name layers by: `{Conv2D: {filters: 32}}`.
Pure Python, no torch; every layer module registers its layers here."""
from __future__ import annotations

import re

from cnnkit.errors import CnnkitError, clipped
from cnnkit.layers.base import Layer

LAYER_TYPES: dict[str, type[Layer]] = {}


def register_layer(cls: type[Layer]) -> type[Layer]:
    """Class decorator, as Keras's `register_keras_serializable`: model files (and saved models)
    can then name the layer by its class name, `{Pointwise: {filters: 8}}`. Its automatic name
    is its class name in snake_case (`pointwise`, `pointwise_1`) unless it sets `base_name`.
    A model file naming it loads wherever the class has been defined (imported) first."""
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise CnnkitError(f"register_layer: {cls!r} is not a subclass of cnnkit.layers.Layer")
    name, taken = cls.__name__, LAYER_TYPES.get(cls.__name__)
    # the same class defined again (a notebook cell run twice, a module reloaded) replaces itself
    if taken is not None and (taken.__module__, taken.__qualname__) != (cls.__module__, cls.__qualname__):
        raise CnnkitError(f"register_layer: the layer type {name!r} is already "
                          f"{taken.__module__}.{taken.__qualname__}; give {cls.__module__}."
                          f"{cls.__qualname__} another class name")
    if "base_name" not in vars(cls):
        cls.base_name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2",
                               re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)).lower()
    LAYER_TYPES[name] = cls
    return cls



def layer_from_config(entry, where: str = "layer") -> Layer:
    """`{"Conv2D": {"filters": 32, ...}}` → Conv2D(32, ...)."""
    if not isinstance(entry, dict) or len(entry) != 1:
        raise CnnkitError(f"{where}: expected one mapping like {{Conv2D: {{filters: 32, kernel_size: 3}}}}; "
                          f"received {clipped(entry)}")
    (type_name, args), = entry.items()
    if not isinstance(type_name, str) or type_name not in LAYER_TYPES:
        # one_of's words, with the name clipped: a file's key can be megabytes
        raise CnnkitError(f"{where}: unknown layer type {clipped(type_name)}; valid: "
                          f"{', '.join(LAYER_TYPES)} (a layer of your own: decorate it with "
                          "@cnnkit.layers.register_layer and import it first)")
    args = {} if args is None else args
    if not isinstance(args, dict):
        raise CnnkitError(f"{where}: {type_name} arguments must be a mapping; received "
                          f"{clipped(args)}")
    cls = LAYER_TYPES[type_name]
    import inspect

    signature = inspect.signature(cls.__init__).parameters
    accepted = set(signature) - {"self"}
    unknown = sorted(set(args) - accepted, key=str)  # a YAML key may be a number
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in signature.values()):
        raise CnnkitError(f"{where}: {type_name} has no argument {clipped(unknown[0])}; "
                          f"valid: {', '.join(sorted(accepted))}")
    try:
        return cls(**args)
    except TypeError as e:  # a required argument is missing
        raise CnnkitError(f"{where}: {type_name}: {clipped(e, quote=False)}") from None
    except CnnkitError as e:
        raise CnnkitError(f"{where}: {e}") from None


def layer_to_config(layer: Layer) -> dict:
    cfg = layer.get_config()
    if layer.name:
        cfg["name"] = layer.name
    return {layer.type: cfg}
