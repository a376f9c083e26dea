"""What a model does with the stages above it, named here and provided there.

A model trains (`Sequential.fit`), draws itself (`plot`) and shows its feature maps, yet the
model stage may not import train or look: stages import one way (README, "Development"). So a
model asks for the behaviour by name, and the front door (cnnkit/__init__.py, which every
`import cnnkit.<anything>` runs first) says which module of which higher stage provides it. The
provider is imported on first use, so building or loading a model imports no trainer."""
from __future__ import annotations

from cnnkit.errors import CnnkitError

# name -> "module:attribute", filled by the front door (cnnkit/__init__.py's PROVIDED)
PROVIDERS: dict[str, str] = {}


def provide(**providers: str) -> None:
    """Say which higher-stage "module:attribute" provides each named behaviour."""
    PROVIDERS.update(providers)


def provided(name: str):
    """The callable a higher stage provides under `name`, imported now."""
    import importlib

    if name not in PROVIDERS:  # a bug in cnnkit's wiring, not a user's mistake
        raise CnnkitError(f"no provider for {name!r}; provided: {', '.join(sorted(PROVIDERS))}")
    module, _, attr = PROVIDERS[name].partition(":")
    return getattr(importlib.import_module(module), attr)
