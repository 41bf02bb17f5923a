"""Resample bars to a coarser timeframe (first open, max high, min low, last close, summed volume)."""
from __future__ import annotations

import numpy as np

from domain.series import BarSeries


def resample(series: BarSeries, timeframe_ms: int, complete_only: bool = True) -> BarSeries:
    """Aggregate into buckets aligned to multiples of ``timeframe_ms`` since the epoch.

    With ``complete_only`` a bucket is kept only when it holds every source bar
    (as exchanges' own candles do): a bucket touched by a gap is dropped, and so
    is a still-forming last bucket — a backtest must not trade on a candle that
    has not closed.
    """
    if timeframe_ms % series.timeframe_ms != 0 or timeframe_ms < series.timeframe_ms:
        raise ValueError(f"cannot resample {series.timeframe_ms} ms bars to {timeframe_ms} ms: "
                         "the new timeframe must be a multiple of the old")
    if len(series) == 0:
        return series
    bucket = series.ts_ms // timeframe_ms
    starts = np.concatenate(([0], np.nonzero(np.diff(bucket))[0] + 1))
    ends = np.concatenate((starts[1:], [len(series)]))
    out_ts = bucket[starts] * timeframe_ms
    out = BarSeries(
        out_ts,
        series.open[starts],
        np.maximum.reduceat(series.high, starts),
        np.minimum.reduceat(series.low, starts),
        series.close[ends - 1],
        np.add.reduceat(series.volume, starts),
        timeframe_ms,
        source=f"{series.source} resampled to {timeframe_ms} ms",
        sha256=series.sha256,
        notes=series.notes,
    )
    if complete_only:
        keep = (ends - starts) == timeframe_ms // series.timeframe_ms
        idx = np.nonzero(keep)[0]
        out = BarSeries(out.ts_ms[idx], out.open[idx], out.high[idx], out.low[idx], out.close[idx],
                        out.volume[idx], timeframe_ms, out.source, out.sha256, out.notes)
    return out
