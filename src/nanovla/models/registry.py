"""Model registry: every model family registers named variants, built by `create_model(name)`.

As in timm: each variant is a one-line builder decorated with `@register_model`, so
`create_model("resnet18", num_classes=10, in_chans=1)` and `list_models("vit_*")` work for the
whole zoo, and one parametrized test can run every registered model.

Every vision model has timm's face: `num_classes=0` builds an identity head (`forward` then
returns the pooled pre-logits features, width `head_hidden_size`), `reset_classifier(n)` replaces
the head, `get_classifier()` returns it, `num_features` is the channel width of
`forward_features`, and `set_grad_checkpointing(True)` recomputes activations in backward.
"""

from __future__ import annotations

import fnmatch
import inspect
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


def _builder(name: str) -> Callable[..., nn.Module]:
    _ensure_zoo_loaded()
    if name not in _REGISTRY:
        raise InputError(
            f"unknown model {name!r}; registered models: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of registered models matching a shell-style `pattern` (e.g. "resnet*")."""
    _ensure_zoo_loaded()
    return sorted(name for name in _REGISTRY if fnmatch.fnmatch(name, pattern))


def model_arguments(name: str) -> frozenset[str]:
    """The keyword arguments that the builder of model `name` names in its signature.

    A caller that serves many models (the VLA policy) asks this before passing an argument only
    some of them take, e.g. `img_size` for models whose input size is fixed when they are built
    (ViT's position embedding, LeNet's flatten width). The builder's own signature is the one
    source of truth, so no flag can drift from the code; and fully convolutional models do not
    grow an `img_size` they would have to ignore (an ignored argument hides a caller's typo).
    Arguments a builder only forwards through `**kwargs` are not listed.
    """
    parameters = inspect.signature(_builder(name)).parameters.values()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(p.name for p in parameters if p.kind in kinds)


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build the registered model `name`; keyword arguments go to its builder
    (`num_classes`, `in_chans`, and family-specific ones such as `img_size`).

    `num_classes=0` gives every vision model an identity head, as in timm. An unknown name is an
    `InputError` that lists the registered models.
    """
    return _builder(name)(**kwargs)
