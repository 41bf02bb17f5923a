"""Where a backtest's bars come from when the user names no file.

Order: the cached exchange download (data_cache/), else a fresh download of
BTC/USDT 1h from the exchange's first candle, else — when the exchange cannot
be reached — the synthetic generator, clearly labelled, so the README's run
command always works.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from feeds.files import load_bars
from domain.series import BarSeries
from feeds.synthetic import synthetic_bars

log = logging.getLogger(__name__)

CACHE_DIR = Path(__file__).resolve().parent.parent / "data_cache"
CACHE_DIR_ENV = "BTC_SCORE_DATA_CACHE"  # another folder for downloaded candles (tests, shared caches)
DEFAULT_EXCHANGE = "binance"
DEFAULT_SYMBOL = "BTC/USDT"
DEFAULT_TIMEFRAME = "1h"
SYNTHETIC_BARS = 24 * 365 * 3


def default_cache_path(exchange: str = DEFAULT_EXCHANGE, symbol: str = DEFAULT_SYMBOL,
                       timeframe: str = DEFAULT_TIMEFRAME) -> Path:
    folder = Path(os.environ[CACHE_DIR_ENV]) if os.environ.get(CACHE_DIR_ENV) else CACHE_DIR
    return folder / f"{exchange}_{symbol.replace('/', '').lower()}_{timeframe}.csv.gz"


def download_market(exchange: str, symbol: str, timeframe: str, *, since_ms: int | None = None,
                    until_ms: int | None = None, exchange_url: str | None = None, quiet: bool = False) -> BarSeries:
    """The candles of one market in ``[since_ms, until_ms)``, fetched into the cache only where missing.

    Unlike the default data set there is no fallback: the user named this market, so a bad symbol
    (FatalFeedError) or an unreachable exchange (RetryableFeedError) is the answer.
    """
    from feeds.download import download_history

    cache = default_cache_path(exchange, symbol, timeframe)
    download_history(exchange, symbol, timeframe, cache, exchange_url=exchange_url, since_ms=since_ms,
                     until_ms=until_ms, progress=not quiet)
    return load_bars(cache)


def resolve_data(path: str | None, quiet: bool = False, exchange_url: str | None = None) -> BarSeries:
    """Load ``path``; without one, the cached or freshly downloaded BTC/USDT 1h history."""
    if path:
        return load_bars(path)
    cache = default_cache_path()
    try:
        from feeds.download import download_history
        from feeds.retry import RetryPolicy

        # A machine without internet should fall back within seconds, not minutes of back-off.
        quick = RetryPolicy(base_delay_s=0.5, max_delay_s=2.0, max_attempts=3, max_elapsed_s=10.0)
        download_history(DEFAULT_EXCHANGE, DEFAULT_SYMBOL, DEFAULT_TIMEFRAME, cache, exchange_url=exchange_url,
                         progress=not quiet, retry_policy=quick, timeout_ms=5_000)
        return load_bars(cache)
    except Exception as exc:  # an unreachable exchange must not stop the default run
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if cache.exists():
            print(f"note: could not update {cache.name} from {DEFAULT_EXCHANGE} ({reason}); using the cached copy",
                  file=sys.stderr)
            return load_bars(cache)
        print(f"note: {DEFAULT_EXCHANGE} cannot be reached ({reason}); using SYNTHETIC data instead "
              f"({SYNTHETIC_BARS:,} generated hourly bars, not real prices)", file=sys.stderr)
        return synthetic_bars(SYNTHETIC_BARS, seed=7)
