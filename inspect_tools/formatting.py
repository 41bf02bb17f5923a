"""Turning stored values into short text for terminals and reports (units made explicit).

Conventions of the store: money in quote currency, quantities in base currency,
``return_pct`` of a trade already in percent, metric fractions (total_return,
max_drawdown, win_rate, ...) as fractions that are shown as percent.
"""
from __future__ import annotations

import json
import math
from typing import Any

from engine.metrics import METRIC_SPECS, MetricSpec
from domain.times import ms_to_text

MISSING = "—"


# Order, labels and units of the metrics: one list, beside the fields of engine.metrics.Metrics.
# Other stored keys (e.g. a sweep's extras) follow, formatted plainly.
METRICS: tuple[MetricSpec, ...] = METRIC_SPECS
_METRIC_BY_KEY = {m.key: m for m in METRICS}


def metric_specs(keys: set[str] | list[str]) -> list[MetricSpec]:
    """Specs for ``keys``: the known ones in canonical order, then the rest alphabetically."""
    present = set(keys)
    known = [m for m in METRICS if m.key in present]
    extra = sorted(present - set(_METRIC_BY_KEY))
    return known + [MetricSpec(k, k, "auto") for k in extra]


def metric_kind(key: str) -> str:
    """The format kind of a known metric name, else 'auto'."""
    spec = _METRIC_BY_KEY.get(key)
    return spec.kind if spec is not None else "auto"


def format_value(kind: str, value: Any) -> str:
    """One cell. Kinds: text, raw (as stored, JSON), int, money, price, qty, pct (fraction), pct100,
    ratio, days, signal, fraction, time, auto."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if kind == "text" or isinstance(value, str):
        return str(value)
    if kind == "raw":
        return json.dumps(value, default=str)
    if kind == "time":
        return ms_to_text(value)
    if not isinstance(value, (int, float)):
        return _compact(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if kind == "int":
        return f"{int(value):,}"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "price":
        return f"{value:,.2f}"
    if kind == "qty":
        return f"{value:,.6f}"
    if kind == "pct":
        return f"{100.0 * value:,.2f} %"
    if kind == "pct100":
        return f"{value:,.2f} %"
    if kind in ("ratio", "fraction"):
        return f"{value:,.2f}"
    if kind == "days":
        return f"{value:,.1f}"
    if kind == "signal":
        return f"{value:+.3f}"
    return _auto_number(value)


def _auto_number(value: int | float) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        return f"{value:,.4g}" if abs(value) < 1 else f"{value:,.2f}"
    return f"{value:.3e}"


def _compact(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, separators=(",", ":"), default=str, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def flatten(mapping: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dict → [('a.b', value), ...] in key order, for parameter listings."""
    out: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.extend(flatten(value, name + "."))
        else:
            out.append((name, value))
    return out


def short_id(run_id: str) -> str:
    return run_id[:8]


def run_label(run: dict[str, Any]) -> str:
    """A run's name, or its short id when it has none."""
    return run.get("name") or short_id(run["id"])


def failure_lines(runs: list[dict[str, Any]], limit: int = 3) -> list[str]:
    """Why runs failed, one line per distinct error (most frequent first): a listing where many runs
    failed for one reason says it once (runs, sweep, run_sweep.py; `show` has each run's error)."""
    errors: dict[str, int] = {}
    for run in runs:
        if run.get("status") == "failed":
            message = next(iter((run.get("error") or "").strip().splitlines()), "no error stored")
            errors[message] = errors.get(message, 0) + 1
    if not errors:
        return []
    ranked = sorted(errors.items(), key=lambda item: -item[1])
    total = sum(errors.values())
    lines = [f"{total} run{'s' * (total != 1)} failed:"]
    lines += [f"  {n} × {message[:300]}" for message, n in ranked[:limit]]
    if len(ranked) > limit:
        lines.append(f"  … and {len(ranked) - limit} other error(s)")
    return lines
