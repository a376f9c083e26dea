"""A cnnkit application as a cnnkit.keras model: the same graph, its layers Keras's twins."""
from __future__ import annotations

import functools


def as_keras(builder):
    """`builder` (cnnkit.model.applications) returning a cnnkit.keras Functional instead."""

    @functools.wraps(builder)
    def build(*args, **kwargs):
        from cnnkit.keras.models import Functional

        return Functional.from_config(builder(*args, **kwargs).get_config())

    return build
