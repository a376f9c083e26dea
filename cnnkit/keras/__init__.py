"""A namespace shaped like Keras 3's public API, on cnnkit: the seeds' Keras code runs with
only its imports changed.

    from tensorflow.keras import layers, models    ->  from cnnkit.keras import layers, models
    from keras.datasets import mnist                ->  from cnnkit.keras.datasets import mnist
    from tensorflow import keras                    ->  from cnnkit import keras

Models built here are cnnkit Sequentials (summary, save, `cnnkit.load`, `cnnkit inspect` /
`serve` / `export` work on them) with Keras's semantics for compile / fit / evaluate /
predict; see cnnkit.keras.models. Real Keras files load with `models.load_model` or
`cnnkit.load` (cnnkit.model.keras_files).

    layers, models, datasets, utils, callbacks, optimizers, regularizers, losses, metrics,
    preprocessing.image, mixed_precision    the Keras modules the seeds use
    saving                                  load_model (compiled as saved), save_model,
                                            register_keras_serializable, get_custom_objects
    applications                            VGG16, ResNet50, MobileNetV2, EfficientNetB0 (weights=
                                            None|'imagenet'|PATH), decode_predictions
    ops                                     expand_dims, sigmoid, softmax, argmax, convert_to_numpy
"""
from __future__ import annotations

import importlib

SUBMODULES = ("layers", "models", "datasets", "utils", "callbacks", "optimizers",
              "regularizers", "losses", "metrics", "preprocessing", "mixed_precision", "training",
              "saving", "applications", "ops")
NAMES = {"Sequential": "models", "Model": "models", "Input": "layers"}


def __getattr__(name: str):
    if name in SUBMODULES:
        value = importlib.import_module(f"cnnkit.keras.{name}")
    elif name in NAMES:
        value = getattr(importlib.import_module(f"cnnkit.keras.{NAMES[name]}"), name)
    else:
        raise AttributeError(f"module 'cnnkit.keras' has no attribute {name!r}")
    globals()[name] = value
    return value


__all__ = list(SUBMODULES) + list(NAMES)
