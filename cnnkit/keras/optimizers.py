"""Keras's optimizers as objects (`optimizers.Adam(learning_rate=1e-3)`) or names, any case
(`'adam'`, `'Adam'`, `'RMSprop'`): the very classes of cnnkit's one optimizer registry
(cnnkit.train.optimizers), with Keras 3's arguments, defaults and update rules; tests/keras
checks the weights after each step against real Keras, optimizer by optimizer."""
from __future__ import annotations

from cnnkit.errors import one_of
from cnnkit.train.optimizers import (  # noqa: F401  (Keras's names for them)
    REGISTRY, SGD, Adadelta, Adagrad, Adam, Adamax, AdamW, Ftrl, Lion, Nadam, Optimizer,
    RMSprop)


def get(identifier) -> Optimizer:
    """An optimizer object from a name (any case), a class or an optimizer object."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in REGISTRY:
        return REGISTRY[identifier.lower()]()
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        return identifier()
    raise one_of("optimizer", identifier, [c.__name__ for c in REGISTRY.values()]
                 + ["or their names in any case ('adam')"])
