"""domain/times.py: the one timeframe parser, epoch-unit rule and half-open time range."""
from __future__ import annotations

import pytest

from domain.times import (TimeBound, TimeRange, epoch_to_ms, floor_to_timeframe, is_aligned, ms_to_iso,
                          parse_time_ms, timeframe_ms, timeframe_name)

JAN1 = 1_704_067_200_000  # 2024-01-01 00:00 UTC, a Monday


@pytest.mark.parametrize("text, ms", [("1s", 1_000), ("1m", 60_000), ("15m", 900_000), ("4h", 14_400_000),
                                      ("1d", 86_400_000), ("1w", 604_800_000), ("90m", 5_400_000)])
def test_timeframes_round_trip(text, ms):
    assert timeframe_ms(text) == ms
    assert timeframe_ms(timeframe_name(ms)) == ms


@pytest.mark.parametrize("text", ["0m", "1M", "", "h", "1.5h", "-1h", "1y"])
def test_bad_timeframes_are_refused(text):
    with pytest.raises(ValueError):
        timeframe_ms(text)


@pytest.mark.parametrize("value", [1_704_067_200, 1_704_067_200_000, 1_704_067_200_000_000,
                                   1_704_067_200_000_000_000])
def test_one_epoch_unit_rule_for_s_ms_us_ns(value):
    assert epoch_to_ms(value) == JAN1
    assert parse_time_ms(str(value), "--start") == JAN1


def test_dates_are_midnight_and_ranges_half_open():
    assert parse_time_ms("2024-01-01", "--end") == JAN1
    assert parse_time_ms("2024-01-01T02:00+02:00") == JAN1
    assert parse_time_ms(None) is None and parse_time_ms("  ") is None
    r = TimeRange.from_bounds(TimeBound(JAN1, True), TimeBound(JAN1 + 10, False))
    assert r.contains(JAN1) and r.contains(JAN1 + 9) and not r.contains(JAN1 + 10)
    with pytest.raises(ValueError, match="--end"):
        TimeRange.from_bounds(TimeBound(JAN1, True), TimeBound(JAN1, True), flags=("--start", "--end"))
    with pytest.raises(ValueError, match="--start"):
        parse_time_ms("soon", "--start")


def test_alignment_weeks_open_on_monday():
    week = timeframe_ms("1w")
    assert is_aligned(JAN1, week) and not is_aligned(JAN1 + 86_400_000, week)
    assert floor_to_timeframe(JAN1 + 3 * 86_400_000, week) == JAN1
    assert ms_to_iso(JAN1 + 1) == "2024-01-01T00:00:00.001Z"
