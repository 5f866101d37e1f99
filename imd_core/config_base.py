"""Frozen, typed configuration dataclasses with strict ``from_dict``.

Every concern (model, data, training, inference) has its own small frozen dataclass
that derives from :class:`FrozenConfig`. ``from_dict`` refuses unknown keys and bad
``Literal`` choices with a :class:`~imd_core.errors.ConfigError` that lists the valid
ones, so a typo in a JSON file or a ``--set key=value`` never passes silently.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from imd_core.errors import ConfigError

T = TypeVar("T", bound="FrozenConfig")


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Converts a JSON value to the annotated type, validating Literals and nesting."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not a valid choice; choose one of {list(choices)}")
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return tp.from_dict(value, where=where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


@dataclasses.dataclass(frozen=True)
class FrozenConfig:
    """Base class: subclasses are ``@dataclass(frozen=True)`` with typed fields."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any], where: str | None = None) -> T:
        """Builds the config from a plain mapping, refusing unknown keys.

        Raises:
            ConfigError: on an unknown key (the message lists the valid keys), a bad
                ``Literal`` choice (the message lists the choices) or a wrong type.
        """
        where = where or cls.__name__
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
        valid = cls.field_names()
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {valid}")
        hints = get_type_hints(cls)
        kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
        try:
            return cls(**kwargs)
        except TypeError as exc:  # a required field is missing
            raise ConfigError(f"{where}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (tuples become lists) that ``from_dict`` reads back."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def replace(self: T, **changes: Any) -> T:
        """Returns a copy with ``changes`` applied and validated like ``from_dict``."""
        data = dataclasses.asdict(self)
        data.update(changes)
        return type(self).from_dict(data)

    def with_overrides(self: T, overrides: dict[str, str]) -> T:
        """Applies dotted ``key=value`` overrides (``model.size=base``) from the CLI.

        Values are parsed as JSON when possible (numbers, booleans, lists), else taken
        as strings, then validated like ``from_dict``.
        """
        data = self.to_dict()
        for dotted, raw in overrides.items():
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            node = data
            parts = dotted.split(".")
            for part in parts[:-1]:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(
                        f"--set {dotted}: {part!r} is not a section; valid keys are {sorted(node)}"
                    )
                node = node[part]
            if parts[-1] not in node:
                raise ConfigError(f"--set {dotted}: unknown key {parts[-1]!r}; valid keys are {sorted(node)}")
            node[parts[-1]] = value
        return type(self).from_dict(data)


def parse_overrides(pairs: typing.Sequence[str]) -> dict[str, str]:
    """Turns ``["a.b=1", "c=x"]`` into ``{"a.b": "1", "c": "x"}``."""
    out: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected key=value, e.g. --set train.lr=0.001")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out
