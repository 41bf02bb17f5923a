"""The one set of candle checks used by every feed (files and exchanges alike)."""
from __future__ import annotations

import math

from domain.errors import DataError

__all__ = ["DataError", "candle_problem"]


def candle_problem(ts_ms: object, o: object, h: object, l: object, c: object, v: object) -> str | None:
    """Return why a candle is invalid, or None when it is fine.

    Checks (DESIGN.md): numeric and finite, prices > 0, high >= max(open, close),
    low <= min(open, close), volume >= 0. Ordering is checked by the caller.
    """
    values = {"timestamp": ts_ms, "open": o, "high": h, "low": l, "close": c, "volume": v}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{name} is not a number ({value!r})"
        if not math.isfinite(value):
            return f"{name} is not finite ({value!r})"
    if ts_ms < 0:  # type: ignore[operator]
        return f"timestamp is negative ({ts_ms})"
    for name in ("open", "high", "low", "close"):
        if values[name] <= 0:  # type: ignore[operator]
            return f"{name} is not positive ({values[name]})"
    if h < max(o, c):  # type: ignore[operator,type-var]
        return f"high {h} < max(open, close) {max(o, c)}"  # type: ignore[type-var]
    if l > min(o, c):  # type: ignore[operator,type-var]
        return f"low {l} > min(open, close) {min(o, c)}"  # type: ignore[type-var]
    if v < 0:  # type: ignore[operator]
        return f"volume is negative ({v})"
    return None
