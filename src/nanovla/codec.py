"""The one codec between config dataclasses and JSON.

`to_json(config)` gives what `json.dumps` can write (tuples -> lists, paths -> str, nested
dataclasses -> dicts). `from_json(cls, data, source)` is its inverse, driven by the type hints:
lists become tuples where the field is a tuple, strings become `Path` where it is a path, nested
dicts become the nested dataclass, `Literal` fields must hold one of their choices. Unknown keys
are refused by name (a typo in a saved file must not be dropped silently); missing keys take the
field's default (or the value `absent` names for it: what a file saved before the field
existed meant, where that differs from today's default), so configs saved before a field
existed still load. Every error is one
`InputError` naming `source` and the dotted key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path, PurePath
from typing import Any, Literal, TypeVar, Union

from nanovla.errors import InputError

T = TypeVar("T")


def to_json(value: Any) -> Any:
    """A dataclass (or anything nested in one) as JSON-ready Python objects."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, PurePath):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise InputError(f"cannot write a {type(value).__name__} as JSON: {value!r}")


def from_json(
    cls: type[T], data: Any, source: str = "config", absent: dict[str, Any] | None = None
) -> T:
    """Rebuild dataclass `cls` from `to_json`'s output; see the module docstring for the rules.
    `absent`: values for top-level keys that `data` lacks, in place of the fields' defaults."""
    if absent and isinstance(data, dict):
        data = {**absent, **data}
    return _dataclass(cls, data, source, "")


def _dataclass(cls: type, data: Any, source: str, where: str) -> Any:
    if not isinstance(data, dict):
        raise InputError(f"{source}: {where or cls.__name__} must be a JSON object, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InputError(
            f"{source}: unknown {cls.__name__} key(s) {[_join(where, k) for k in unknown]}; "
            f"known: {sorted(fields)}"
        )
    values = {
        name: _value(hints[name], item, source, _join(where, name)) for name, item in data.items()
    }
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise InputError(f"{source}: {where + ': ' if where else ''}{error}") from error


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _value(hint: Any, value: Any, source: str, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _value(option, value, source, where)
            except InputError as error:
                errors.append(str(error))
        raise InputError(
            errors[0] if len(errors) == 1 else f"{source}: {where}: {value!r} fits none of {hint}"
        )
    if dataclasses.is_dataclass(hint):
        return _dataclass(hint, value, source, where)
    if origin is Literal:
        if value not in args:
            raise InputError(f"{source}: {where} is {value!r}; choose one of {list(args)}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise InputError(f"{source}: {where} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_value(args[0], v, source, f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise InputError(f"{source}: {where} must hold {len(args)} values, got {value!r}")
        kinds = args or (Any,) * len(value)
        return tuple(
            _value(k, v, source, f"{where}[{i}]") for i, (k, v) in enumerate(zip(kinds, value))
        )
    if origin in (list, dict) or hint in (list, dict):
        expected = origin or hint
        if not isinstance(value, expected):
            raise InputError(f"{source}: {where} must be a {expected.__name__}, got {value!r}")
        return value
    if hint is Any:
        return value
    if isinstance(hint, type) and issubclass(hint, PurePath):
        if not isinstance(value, str):
            raise InputError(f"{source}: {where} must be a path string, got {value!r}")
        return Path(value)
    return _scalar(hint, value, source, where)


def _scalar(hint: Any, value: Any, source: str, where: str) -> Any:
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    else:
        return value  # a type this codec does not check: the dataclass's own checks decide
    if not ok:
        raise InputError(f"{source}: {where} must be {hint.__name__}, got {value!r}")
    return value


def field_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ between two config dataclasses."""
    names = []
    for spec in dataclasses.fields(old):
        a, b = getattr(old, spec.name), getattr(new, spec.name)
        name = f"{prefix}{spec.name}"
        if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
            names += field_differences(a, b, name + ".")
        elif a != b:
            names.append(name)
    return names
