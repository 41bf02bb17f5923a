"""Bars for a run: a file (or the default data set), optionally resampled, cut to [start, end)."""
from __future__ import annotations

from feeds.default_data import resolve_data
from feeds.series import BarSeries, timeframe_to_ms
from feeds.validation import DataError


def load_window(path: str | None, start_ms: int | None = None, end_ms: int | None = None,
                timeframe: str | None = None, *, quiet: bool = False) -> BarSeries:
    """Load and validate ``path`` (None: the default data set), resample to ``timeframe``, keep [start, end).

    Raises ValueError for a bad window or timeframe and DataError for bad or too little data.
    """
    if start_ms is not None and end_ms is not None and end_ms <= start_ms:
        raise ValueError("--end must be after --start")
    series = resolve_data(path, quiet=quiet)
    if timeframe:
        from feeds.resample import resample

        series = resample(series, timeframe_to_ms(timeframe))
    series = series.between(start_ms, end_ms)
    if len(series) < 2:
        raise DataError(f"{series.source}: fewer than 2 bars between --start and --end")
    return series
