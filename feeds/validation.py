"""The one set of candle checks used by every feed (files and exchanges alike).

The rules (DESIGN.md): numeric and finite, prices > 0, high >= max(open, close),
low <= min(open, close), volume >= 0, timestamps strictly ascending. They are written
once, vectorised (:func:`value_problems`, :func:`order_problems`); the file loader and
the exchange responses both go through them, and :func:`candle_problem` applies them
to a single candle.
"""
from __future__ import annotations

import numpy as np

from domain.errors import DataError
from domain.times import ms_to_text

__all__ = ["DataError", "PRICE_COLUMNS", "VALUE_COLUMNS", "candle_problem", "candle_type_problem", "order_problems", "value_problems"]

PRICE_COLUMNS = ("open", "high", "low", "close")
VALUE_COLUMNS = PRICE_COLUMNS + ("volume",)


def value_problems(values: dict[str, np.ndarray], problems: dict[int, str] | None = None) -> dict[int, str]:
    """Row index -> why that row's values break a rule (the first rule each row breaks).

    ``values`` maps each of :data:`VALUE_COLUMNS` to a float array; ``problems`` (if given)
    is filled in place and rows already in it keep their earlier reason.
    """
    problems = {} if problems is None else problems
    o, h, l, c, v = (values[k] for k in VALUE_COLUMNS)
    for name in VALUE_COLUMNS:
        for i in np.nonzero(~np.isfinite(values[name]))[0]:
            problems.setdefault(int(i), f"{name} is missing or not finite ({values[name][i]})")
    with np.errstate(invalid="ignore"):
        for name in PRICE_COLUMNS:
            for i in np.nonzero(values[name] <= 0)[0]:
                problems.setdefault(int(i), f"{name} is not positive ({values[name][i]})")
        for i in np.nonzero(h < np.maximum(o, c))[0]:
            problems.setdefault(int(i), f"high {h[i]} < max(open, close) {max(o[i], c[i])}")
        for i in np.nonzero(l > np.minimum(o, c))[0]:
            problems.setdefault(int(i), f"low {l[i]} > min(open, close) {min(o[i], c[i])}")
        for i in np.nonzero(v < 0)[0]:
            problems.setdefault(int(i), f"volume is negative ({v[i]})")
    return problems


def order_problems(ts_ms: np.ndarray, problems: dict[int, str] | None = None) -> dict[int, str]:
    """Row index -> duplicate or out-of-order timestamp (candles must be strictly ascending)."""
    problems = {} if problems is None else problems
    if len(ts_ms) < 2:
        return problems
    step = np.diff(ts_ms)
    for i in np.nonzero(step == 0)[0]:
        problems.setdefault(int(i) + 1, f"duplicate timestamp {_fmt(ts_ms[i + 1])}")
    for i in np.nonzero(step < 0)[0]:
        problems.setdefault(int(i) + 1, f"timestamp {_fmt(ts_ms[i + 1])} is earlier than the row before "
                                        f"({_fmt(ts_ms[i])}): rows must be sorted ascending")
    return problems


def candle_problem(ts_ms: object, o: object, h: object, l: object, c: object, v: object) -> str | None:
    """Why one candle breaks the rules, or None when it is fine. Ordering is checked by the caller."""
    problem = candle_type_problem(ts_ms, o, h, l, c, v)
    if problem:
        return problem
    columns = dict(zip(VALUE_COLUMNS, (np.array([x], dtype=float) for x in (o, h, l, c, v))))
    return value_problems(columns).get(0)


def candle_type_problem(ts_ms: object, *values: object) -> str | None:
    """Plain-number and timestamp checks that typed columns already guarantee (exchange JSON does not)."""
    for name, value in zip(("timestamp",) + VALUE_COLUMNS, (ts_ms, *values)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{name} is not a number ({value!r})"
    if not np.isfinite(ts_ms):  # type: ignore[arg-type]
        return f"timestamp is not finite ({ts_ms!r})"
    if ts_ms < 0:  # type: ignore[operator]
        return f"timestamp is negative ({ts_ms})"
    return None


def _fmt(ms: int) -> str:
    return f"{int(ms)} ({ms_to_text(int(ms), seconds=True, zone=True)})"
