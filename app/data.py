"""Bars for a run: a file (or the default data set), optionally resampled, cut to [start, end)."""
from __future__ import annotations

from dataclasses import dataclass

from domain.series import BarSeries
from domain.times import TimeRange, timeframe_ms
from feeds.default_data import download_market, resolve_data
from feeds.validation import DataError


@dataclass(frozen=True)
class Market:
    """A market to backtest on, by exchange (a ccxt id), symbol and an optional REST base URL."""

    exchange: str
    symbol: str
    exchange_url: str | None = None


def load_window(path: str | None, start_ms: int | None = None, end_ms: int | None = None,
                timeframe: str | None = None, *, quiet: bool = False, market: Market | None = None) -> BarSeries:
    """Load and validate ``path`` (None: the default data set), resample to ``timeframe``, keep [start, end).

    With ``market`` the bars come from that exchange instead (downloaded where the cache lacks them, at
    ``timeframe``, so nothing is resampled). Raises ValueError for a bad window or timeframe, DataError
    for bad or too little data, and FeedError when the market's exchange refuses or cannot be reached.
    """
    TimeRange.checked(start_ms, end_ms, ("--start", "--end"))
    if market is not None:
        if path:
            raise ValueError("--data and --exchange/--symbol are alternatives: give one")
        series = download_market(market.exchange, market.symbol, timeframe or "1h", since_ms=start_ms,
                                 until_ms=end_ms, exchange_url=market.exchange_url, quiet=quiet)
        timeframe = None  # downloaded at that timeframe already
    else:
        series = resolve_data(path, quiet=quiet)
    if timeframe:
        from feeds.resample import resample

        series = resample(series, timeframe_ms(timeframe))
    series = series.between(start_ms, end_ms)
    if len(series) < 2:
        raise DataError(f"{series.source}: fewer than 2 bars between --start and --end")
    return series
