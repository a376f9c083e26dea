"""A cnnkit application as a cnnkit.keras model: the same graph, its layers Keras's twins."""
from __future__ import annotations

import functools
import inspect


def as_keras(builder):
    """`builder` (cnnkit.model.applications) returning a cnnkit.keras Functional instead, with
    the weights the builder loaded (`weights=`; the config carries none) and the preprocessing
    they were trained with (a PyTorch file's)."""

    @functools.wraps(builder)
    def build(*args, **kwargs):
        from cnnkit.keras.models import Functional

        core = builder(*args, **kwargs)
        model = Functional.from_config(core.get_config())
        if inspect.signature(builder).bind(*args, **kwargs).arguments.get("weights") is not None:
            model.net.load_state_dict(core.net.state_dict())
            model.preprocessing = dict(core.preprocessing)
        return model

    return build
