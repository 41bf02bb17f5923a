"""A strategy's settable parameters, read from its frozen config dataclass.

Every leaf field of the config (nested configs are flattened: the score
strategy's ``walk_forward.train.seed`` is the parameter ``seed``) becomes one
:class:`ParamSpec` with its type, its default (taken from a default instance, so
a nested config's own defaults win) and its doc (the field's
``metadata["doc"]``, else the ``# comment`` on its line). A field added to a
config therefore appears on the command line (``--param NAME=VALUE``) and in
sweeps with no other change. Fields of other types (callables, mappings) are
not settable and keep their defaults.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

_COMMENT = re.compile(r"^\s*(\w+)\s*:[^#]*#\s*(.+?)\s*$")
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}
_NONE = {"none", "null"}


class ParamError(ValueError):
    """An unknown parameter name or a value of the wrong type (one line for the user)."""


@dataclass(frozen=True)
class ParamSpec:
    """One settable parameter: its flat name, where it sits in the config, its type, default and doc."""

    name: str
    path: tuple[str, ...]  # attribute path inside the config, e.g. ("walk_forward", "train", "seed")
    kind: str  # int | float | bool | str | ints / floats (tuples, comma-separated)
    default: Any
    optional: bool  # None is allowed ("none" on the command line)
    doc: str = ""

    def parse(self, text: str) -> Any:
        """Text from ``--param``/``--grid`` → a typed value, or :class:`ParamError`."""
        raw = text.strip()
        if self.optional and raw.lower() in _NONE:
            return None
        try:
            if self.kind == "bool":
                low = raw.lower()
                if low not in _TRUE | _FALSE:
                    raise ValueError
                return low in _TRUE
            if self.kind == "int":
                return int(raw)
            if self.kind == "float":
                value = float(raw)
                if not math.isfinite(value):
                    raise ValueError
                return value
            if self.kind == "ints":
                return tuple(int(v) for v in raw.split(",") if v.strip())
            if self.kind == "floats":
                return tuple(float(v) for v in raw.split(",") if v.strip())
        except ValueError:
            raise ParamError(f"{self.name}={text!r}: expected {self.describe_type()}") from None
        return raw

    def coerce(self, value: Any) -> Any:
        """A Python value (from the API or a stored config) → this parameter's type, or :class:`ParamError`."""
        if isinstance(value, str):
            return self.parse(value)
        if value is None:
            if self.optional:
                return None
            raise ParamError(f"{self.name}: None is not allowed (expected {self.describe_type()})")
        ok = {"bool": lambda v: isinstance(v, bool),
              "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
              "ints": lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, int) for x in v),
              "floats": lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) for x in v),
              "str": lambda v: isinstance(v, str)}[self.kind]
        if self.kind == "int" and isinstance(value, float) and value.is_integer():
            value = int(value)
        if not ok(value):
            raise ParamError(f"{self.name}={value!r}: expected {self.describe_type()}")
        if self.kind == "float":
            return float(value)
        if self.kind == "floats":
            return tuple(float(x) for x in value)
        return tuple(value) if self.kind == "ints" else value

    def describe_type(self) -> str:
        base = {"ints": "comma-separated integers", "floats": "comma-separated numbers",
                "str": "text"}.get(self.kind, self.kind)
        return base + (" or none" if self.optional else "")


def config_params(config_cls: type, defaults: Any | None = None,
                  overrides: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[ParamSpec, ...]:
    """Flatten ``config_cls``'s fields into ParamSpecs (``overrides``: per name, default/doc/optional to replace)."""
    instance = defaults if defaults is not None else config_cls()
    specs = list(_walk(config_cls, instance, ()))
    names = [s.name for s in specs]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:  # two nested configs share a leaf name: qualify both with their path
        specs = [dataclasses.replace(s, name=".".join(s.path)) if s.name in dupes else s for s in specs]
    for name, change in (overrides or {}).items():
        i = next((k for k, s in enumerate(specs) if s.name == name), None)
        if i is None:
            raise KeyError(f"override for unknown parameter {name!r}")
        specs[i] = dataclasses.replace(specs[i], **change)
    return tuple(specs)


def build_config(config_cls: type, values: Mapping[str, Any], specs: Iterable[ParamSpec]) -> Any:
    """The frozen config with every leaf set from ``values`` (keyed by ParamSpec name)."""
    by_path = {s.path: values[s.name] for s in specs}
    return _construct(config_cls, (), by_path)


def _walk(cls: type, instance: Any, prefix: tuple[str, ...]) -> Iterable[ParamSpec]:
    hints = typing.get_type_hints(cls)
    docs = _field_comments(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        path = prefix + (f.name,)
        value = getattr(instance, f.name)
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            yield from _walk(hint, value, path)
            continue
        found = _kind(hint)
        if found is None:  # e.g. a callable or a mapping: not settable from text, keeps its default
            continue
        kind, optional = found
        doc = f.metadata.get("doc") or docs.get(f.name, "")
        yield ParamSpec(f.name, path, kind, value, optional, doc)


def _kind(hint: Any) -> tuple[str, bool] | None:
    """(kind, optional) of a field type this module can parse from text, else None."""
    args = typing.get_args(hint)
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        optional = len(rest) < len(args)
        if len(rest) != 1:
            return None
        hint = rest[0]
        args = typing.get_args(hint)
    if hint in (bool, int, float, str):
        return hint.__name__, optional
    if typing.get_origin(hint) is typing.Literal and all(isinstance(a, str) for a in args):
        return "str", optional
    if typing.get_origin(hint) is tuple and args in ((int, ...),):
        return "ints", optional
    if typing.get_origin(hint) is tuple and args in ((float, ...),):
        return "floats", optional
    return None


def _field_comments(cls: type) -> dict[str, str]:
    """``name: type = default  # doc`` → {name: doc}, read from the class source."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    for line in source.splitlines():
        match = _COMMENT.match(line)
        if match and match.group(1) not in out:
            out[match.group(1)] = match.group(2)
    return out


def _construct(cls: type, prefix: tuple[str, ...], by_path: Mapping[tuple[str, ...], Any]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        path = prefix + (f.name,)
        if dataclasses.is_dataclass(hints[f.name]):
            kwargs[f.name] = _construct(hints[f.name], path, by_path)
        elif path in by_path:
            kwargs[f.name] = by_path[path]
    return cls(**kwargs)
