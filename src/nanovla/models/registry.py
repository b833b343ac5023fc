"""Model registry: every model family registers named variants, built by `create_model(name)`.

As in timm: each variant is a one-line builder decorated with `@register_model`, so
`create_model("resnet18", num_classes=10, in_chans=1)` and `list_models("vit_*")` work for the
whole zoo, and one parametrized test can run every registered model.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import TypeVar

from torch import nn

from nanovla.errors import InputError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])


def register_model(builder: Builder) -> Builder:
    """Register `builder` under its function name; a second builder with that name is an error."""
    name = builder.__name__
    if name in _REGISTRY and _REGISTRY[name] is not builder:
        raise InputError(f"model {name!r} is registered twice")
    _REGISTRY[name] = builder
    return builder


def _ensure_zoo_loaded() -> None:
    # Importing the package registers every family (its __init__ imports them all).
    import nanovla.models  # noqa: F401


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of registered models matching a shell-style `pattern` (e.g. "resnet*")."""
    _ensure_zoo_loaded()
    return sorted(name for name in _REGISTRY if fnmatch.fnmatch(name, pattern))


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build the registered model `name`; keyword arguments go to its builder
    (`num_classes`, `in_chans`, and family-specific ones such as `img_size`)."""
    _ensure_zoo_loaded()
    if name not in _REGISTRY:
        raise InputError(
            f"unknown model {name!r}; registered models: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name](**kwargs)
