"""Candle fixtures for tests and benchmarks: a seeded random walk and plain CSV I/O.

CSV format (the same as download_data.py's output):
``timestamp,open,high,low,close,volume`` with ``timestamp`` = candle open time in
ms UTC; ``.gz`` suffix means gzip.
"""
from __future__ import annotations

import csv
import gzip
import io
import math
import random
from pathlib import Path
from typing import Iterable

from domain.types import Bar
from feeds.files import load_bars

CSV_HEADER = ("timestamp", "open", "high", "low", "close", "volume")


def random_walk_bars(n: int, *, start_ts_ms: int = 1_748_736_000_000,  # 2025-06-01 00:00 UTC
                     timeframe_ms: int = 60_000, seed: int = 0, start_price: float = 30_000.0,
                     volatility: float = 0.001) -> list[Bar]:
    """``n`` valid, contiguous candles from a seeded log-normal random walk.

    Prices have 2 decimals and volumes 4, so every value survives a round trip
    through text unchanged; each candle opens at the previous close. Volumes are
    > 0 and close != open almost surely, so a partial (in-progress) copy of a
    candle never equals the final one.
    """
    if start_ts_ms % timeframe_ms:
        raise ValueError(f"start_ts_ms {start_ts_ms} is not aligned to {timeframe_ms} ms")
    rng = random.Random(seed)
    bars: list[Bar] = []
    price = round(start_price, 2)
    for i in range(n):
        o = price
        c = round(o * math.exp(rng.gauss(0.0, volatility)), 2)
        if c == o:
            c = round(o + 0.01, 2)
        h = round(max(o, c) + abs(rng.gauss(0.0, volatility / 2)) * o, 2)
        low = round(min(o, c) - abs(rng.gauss(0.0, volatility / 2)) * o, 2)
        v = round(0.01 + abs(rng.gauss(5.0, 3.0)), 4)
        bars.append(Bar(start_ts_ms + i * timeframe_ms, o, h, low, c, v))
        price = c
    return bars


def read_candles_csv(path: str | Path) -> list[Bar]:
    """Load and validate a candle file with the product's loader (:func:`feeds.files.load_bars`)."""
    return list(load_bars(path).iter_bars())


def write_candles_csv(path: str | Path, bars: Iterable[Bar]) -> Path:
    """Write candles as CSV (gzip when the name ends in .gz). Not atomic: test fixtures only."""
    path = Path(path)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for b in bars:
        writer.writerow((b.ts_ms, repr(b.open), repr(b.high), repr(b.low), repr(b.close), repr(b.volume)))
    data = buf.getvalue().encode()
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path
