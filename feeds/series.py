"""Timeframe names, and the bar block type re-exported from the ground layer (``domain.series``)."""
from __future__ import annotations

from domain.series import BarSeries, GapReport
from domain.times import timeframe_ms, timeframe_name

__all__ = ["BarSeries", "GapReport", "ms_to_timeframe", "timeframe_to_ms"]

# One timeframe parser for the whole project (domain/times.py); these names stay for callers.
timeframe_to_ms = timeframe_ms
ms_to_timeframe = timeframe_name
