"""Keras 3's `keras.saving`: models come back compiled, as Keras's do.

    model.save("m.keras")                       # or a cnnkit directory, or legacy .h5
    model = saving.load_model("m.keras")        # compiled: the optimizer with its settings,
    model.evaluate(x, y)                        # the loss and the metrics, as saved

A file that real Keras wrote after `compile()` holds a `compile_config` (legacy .h5: a
`training_config`); cnnkit writes the same for a model cnnkit.keras compiled, in a `.keras`
or `.h5` file and in its own model directory (cnnkit.model.keras_writing.compile_config), so
Keras reads cnnkit's files compiled too. `compile=False` returns the model uncompiled.

`register_keras_serializable` registers a layer class of your own (cnnkit's register_layer):
model files name it by its class name.
"""
from __future__ import annotations

import warnings

from cnnkit.errors import CnnkitError, shown

# Keras optimizer settings cnnkit does not have: ignored (they change nothing while use_ema is
# off), or refused where set to anything but the value that changes nothing
IGNORED_OPTIMIZER_KEYS = ("name", "ema_momentum", "ema_overwrite_frequency")
UNSUPPORTED = {"use_ema": False, "loss_scale_factor": None, "gradient_accumulation_steps": None}
IGNORED_LOSS_KEYS = ("reduction", "ignore_class", "axis", "dtype")


def load_model(filepath, compile=True, custom_objects=None, safe_mode=True):
    """A `.keras` file (Keras 3), an `.h5` file (legacy Keras) or a cnnkit model directory, as
    a cnnkit.keras Sequential; compiled as it was saved unless `compile=False` (a file saved
    before compile() comes back uncompiled, as in Keras). A compile setting cnnkit cannot
    take is a warning, as in Keras, and the model comes back uncompiled. `custom_objects`:
    {name: layer class of your own}, registered as `register_keras_serializable` does."""
    from cnnkit.keras.models import Sequential
    from cnnkit.model.saving import load

    for obj in (custom_objects or {}).values():  # Keras resolves the file's names through them
        register_keras_serializable()(obj)
    model = load(filepath, cls=Sequential)
    config = getattr(model, "saved_compile_config", None)
    if compile and config:
        try:
            arguments = compile_arguments(config)
        except CnnkitError as e:
            warnings.warn(f"{filepath}: compile() was not restored ({e}); call compile() "
                          "before fit or evaluate", stacklevel=2)
        else:
            model.compile(**arguments)
    return model


def save_model(model, filepath, overwrite=True, **kwargs):
    """`model.save(filepath)`: a `.keras` or `.h5` file, else a cnnkit model directory."""
    from pathlib import Path

    if kwargs:
        key = next(iter(kwargs))
        raise CnnkitError(f"save_model() got an unknown argument {key}={shown(kwargs[key])}; "
                          "valid: model, filepath, overwrite")
    if not overwrite and Path(filepath).exists():
        raise CnnkitError(f"{filepath} exists; pass overwrite=True to replace it")
    model.save(filepath)


def compile_arguments(config: dict) -> dict:
    """compile()'s arguments from Keras's `compile_config` (one line naming what cnnkit cannot
    take)."""
    if not isinstance(config, dict):
        raise CnnkitError(f"compile_config={shown(config)} is not understood")
    return {"optimizer": _optimizer(config.get("optimizer")), "loss": _loss(config.get("loss")),
            "metrics": [_metric(m) for m in config.get("metrics") or []]}


def _class_and_config(entry, what: str):
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, dict) and isinstance(entry.get("class_name"), str):
        return entry["class_name"], dict(entry.get("config") or {})
    raise CnnkitError(f"the saved {what} {shown(entry)} is not understood")


def _optimizer(entry):
    from cnnkit.keras import optimizers

    class_name, config = _class_and_config(entry, "optimizer")
    cls = type(optimizers.get(class_name))  # any case; unknown: the list of valid ones
    for key in IGNORED_OPTIMIZER_KEYS:
        config.pop(key, None)
    for key, harmless in UNSUPPORTED.items():
        value = config.pop(key, harmless)
        if value != harmless:
            raise CnnkitError(f"optimizer {class_name}: {key}={shown(value)} is not supported")
    return cls(**{k: _float32(v) for k, v in config.items()})


def _float32(value):
    """A setting Keras kept as float32 (learning_rate 0.05 saved as 0.05000000074505806) as the
    number the user wrote; other values as they are."""
    import numpy as np

    if isinstance(value, float) and float(np.float32(value)) == value:
        return float(str(np.float32(value)))
    return value


def _loss(entry):
    from cnnkit.keras import losses

    if entry is None:
        raise CnnkitError("the saved compile() has no loss")
    class_name, config = _class_and_config(entry, "loss")
    if not config:
        return losses.get(class_name)
    cls = getattr(losses, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, losses.Loss)):
        return losses.get(class_name)  # the error listing the losses cnnkit has
    kept = {k: v for k, v in config.items() if k not in IGNORED_LOSS_KEYS}
    if config.get("ignore_class") is not None:
        raise CnnkitError(f"loss {class_name}: ignore_class is not supported")
    return cls(**kept)


def _metric(entry):
    from cnnkit.keras import metrics

    class_name, config = _class_and_config(entry, "metric")
    if not config:
        return class_name  # a name: 'accuracy', 'acc', ...
    cls = getattr(metrics, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, metrics.Metric)):
        raise CnnkitError(f"metric {class_name} is not supported; valid: Accuracy, "
                          "SparseCategoricalAccuracy, CategoricalAccuracy, BinaryAccuracy")
    return cls(name=config.get("name"))


def register_keras_serializable(package="Custom", name=None):
    """Keras's decorator, for a layer class of your own (a cnnkit Layer subclass): model files
    and saved models then name it by its class name (cnnkit.layers.register_layer)."""
    from cnnkit.layers import Layer, register_layer

    def decorate(cls):
        if not (isinstance(cls, type) and issubclass(cls, Layer)):
            raise CnnkitError(f"register_keras_serializable: {shown(cls)} is not a layer class "
                              "(a subclass of cnnkit.layers.Layer); cnnkit registers "
                              "layers only")
        if name is not None and name != cls.__name__:
            raise CnnkitError(f"register_keras_serializable: name={shown(name)}; cnnkit names a "
                              f"layer by its class name ({cls.__name__!r}): leave name out")
        return register_layer(cls)

    return decorate


def get_custom_objects() -> dict:
    """{class name: class} of every layer type a model file may name, cnnkit's and yours."""
    from cnnkit.layers import LAYER_TYPES

    return dict(LAYER_TYPES)
