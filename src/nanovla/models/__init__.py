"""Model zoo: `create_model(name, **kwargs)` builds any registered model; `list_models()` lists them.

Importing this package registers every model family: each module in `vision/` and `text/`
registers its variants with `@register_model` when imported, and they are all imported here, so
adding a family is adding a file.
"""

import importlib
import pkgutil

from nanovla.models import text, vision
from nanovla.models.registry import create_model, list_models, register_model

for _package in (vision, text):
    for _module in pkgutil.iter_modules(_package.__path__):
        importlib.import_module(f"{_package.__name__}.{_module.name}")

__all__ = ["create_model", "list_models", "register_model"]
