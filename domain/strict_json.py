"""Strict JSON for every --json output: undefined numbers become null, never NaN/Infinity.

``json.dumps`` writes ``NaN`` and ``Infinity`` by default, which no JSON parser but
Python's accepts. :func:`jsonable` converts a result first (non-finite floats to None,
numpy scalars and arrays to Python, tuples to lists, bytes to a ``<N bytes>`` note),
and :func:`dumps_strict` keeps ``allow_nan=False`` as a guard.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any


def jsonable(value: Any) -> Any:
    """A copy of ``value`` that strict JSON can represent exactly."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):  # dicts and typed read-only mappings (engine.metrics.Metrics)
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if hasattr(value, "tolist"):  # numpy scalar or array
        return jsonable(value.tolist())
    if hasattr(value, "item"):
        return jsonable(value.item())
    return str(value)


def dumps_strict(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`jsonable` ``(value)``; raises ValueError rather than emit NaN."""
    return json.dumps(jsonable(value), allow_nan=False, **kwargs)
