"""Pure helpers: time parsing and ranges, point thinning, the buy-and-hold curve, value formats."""
from __future__ import annotations

import numpy as np
import pytest

from engine.metrics import buy_and_hold_equity, max_drawdown
from inspect_tools.curves import buy_and_hold, thin_indices
from inspect_tools.formatting import failure_lines, format_value, metric_specs
from inspect_tools.queries import drawdown
from domain.times import TimeRange, ms_to_iso, parse_time

DAY = 86_400_000
JAN1 = 1_704_067_200_000  # 2024-01-01 00:00 UTC


@pytest.mark.parametrize(("text", "ts_ms", "date_only"), [
    ("2024-01-01", JAN1, True),
    ("2024-01-01T06:30", JAN1 + 6.5 * 3_600_000, False),
    ("2024-01-01 06:30:00Z", JAN1 + 6.5 * 3_600_000, False),
    ("2024-01-01T08:30+02:00", JAN1 + 6.5 * 3_600_000, False),
    ("1704067200000", JAN1, False),
    ("1704067200", JAN1, False),  # seconds, by magnitude (the one epoch-unit rule)
    ("1704067200000000", JAN1, False),  # µs
])
def test_parse_time(text: str, ts_ms: float, date_only: bool) -> None:
    bound = parse_time(text)
    assert (bound.ts_ms, bound.date_only) == (int(ts_ms), date_only)


@pytest.mark.parametrize("text", ["", "tomorrow", "2024-02-30", "12:00", "-5"])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def test_time_range_is_half_open_and_dates_are_midnight() -> None:
    r = TimeRange.from_bounds(parse_time("2024-01-01"), parse_time("2024-01-02"))
    assert r.contains(JAN1) and r.contains(JAN1 + DAY - 1) and not r.contains(JAN1 + DAY)
    r = TimeRange.from_bounds(None, parse_time(str(JAN1 + 1)))
    assert r.contains(JAN1) and not r.contains(JAN1 + 1)
    with pytest.raises(ValueError):
        TimeRange.from_bounds(parse_time("2024-01-02"), parse_time("2024-01-01T12:00"))
    assert ms_to_iso(JAN1 + 1_500) == "2024-01-01T00:00:01.500Z"


def test_thin_indices_keeps_ends_and_extremes() -> None:
    rng = np.random.default_rng(0)
    y = np.cumsum(rng.normal(size=100_003))
    keep = thin_indices(y, 2_000)
    assert len(keep) <= 2_001 and keep[0] == 0 and keep[-1] == len(y) - 1
    assert np.all(np.diff(keep) > 0)
    assert np.argmin(y) in keep and np.argmax(y) in keep
    assert list(thin_indices(y[:10], 2_000)) == list(range(10))
    assert len(thin_indices(y, 0)) == len(y)


def test_buy_and_hold_uses_stored_opens_exactly_and_approximates_without() -> None:
    ts = np.arange(5, dtype=np.int64) * 60_000
    opens = np.array([100.0, 101.0, 99.0, 102.0, 104.0])
    closes = np.array([100.5, 99.5, 101.5, 103.0, 103.5])
    bars = [{"ts": int(t), "open": o} for t, o in zip(ts, opens)]
    exact = buy_and_hold(ts, closes, bars, 1_000.0, 10.0, 5.0)
    assert np.array_equal(exact.equity, buy_and_hold_equity(opens, closes, 1_000.0, 10.0, 5.0))
    approx = buy_and_hold(ts, closes, [], 1_000.0, None, None)
    prev_close = np.concatenate(([closes[0]], closes[:-1]))
    assert np.array_equal(approx.equity, buy_and_hold_equity(prev_close, closes, 1_000.0, 10.0, 0.0))
    assert "approximates" in approx.note and "10 bps" in approx.note


def test_drawdown_matches_engine_metrics() -> None:
    eq = np.array([100.0, 110.0, 99.0, 120.0, 90.0, 95.0])
    dd = drawdown(eq, 105.0)
    assert dd.min() == max_drawdown(np.concatenate(([105.0], eq)))[0]
    assert dd[0] == 100.0 / 105.0 - 1.0


def test_formats() -> None:
    assert format_value("pct", -0.0571) == "-5.71 %"
    assert format_value("pct100", 5.4498) == "5.45 %"
    assert format_value("money", 1234567.891) == "1,234,567.89"
    assert format_value("ratio", None) == "—"
    assert format_value("time", JAN1) == "2024-01-01 00:00"
    assert format_value("raw", 10.0) == "10.0" and format_value("raw", "x") == "x"
    assert format_value("auto", True) == "yes"
    assert [s.key for s in metric_specs(["zeta", "sharpe", "total_return"])] == ["total_return", "sharpe", "zeta"]


def test_failure_lines_count_each_error_once_by_its_first_line() -> None:
    runs = [{"status": "failed", "error": "ValueError: bad\ntraceback"},
            {"status": "failed", "error": "ValueError: bad"}, {"status": "failed", "error": "   "},
            {"status": "failed", "error": None}, {"status": "completed"}]
    assert failure_lines(runs) == ["4 runs failed:", "  2 × ValueError: bad", "  2 × no error stored"]
    assert failure_lines([{"status": "completed", "error": None}]) == []
