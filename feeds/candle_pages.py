"""Pure helpers for a page of exchange candles (ccxt OHLCV rows): check it, keep closed bars.
No I/O, no ccxt import.

Timeframes are ccxt-style strings: ``"1s"``, ``"1m"``, ``"15m"``, ``"1h"``, ``"4h"``,
``"1d"``, ``"3d"``, ``"1w"``. Calendar months (``"1M"``) are not supported: their
length varies, so "open + timeframe = close" would not hold.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from domain.times import is_aligned
from domain.types import Bar
from feeds.validation import VALUE_COLUMNS, candle_type_problem, value_problems


def rows_problem(rows: Sequence[object], tf_ms: int) -> str | None:
    """Why a list of ``[ts, o, h, l, c, v]`` rows is not a usable exchange response, or None.

    Shape, types and alignment row by row; the value rules once over the whole page
    (:func:`feeds.validation.value_problems`, the checks the file loader uses).
    """
    for i, row in enumerate(rows):
        if not isinstance(row, (list, tuple)) or len(row) < 6:
            return f"row {i} is not a 6-field candle ({row!r})"
        problem = candle_type_problem(*row[:6])
        if problem:
            return f"row {i} ({row[:6]!r}): {problem}"
        if not is_aligned(int(row[0]), tf_ms):  # type: ignore[call-overload]
            return f"row {i}: timestamp {row[0]} is not aligned to the {tf_ms} ms timeframe"
    if not rows:
        return None
    table = np.array([row[1:6] for row in rows], dtype=float)  # type: ignore[index]
    problems = value_problems({name: table[:, k] for k, name in enumerate(VALUE_COLUMNS)})
    if problems:
        i = min(problems)
        return f"row {i} ({rows[i][:6]!r}): {problems[i]}"  # type: ignore[index]
    return None


def closed_bars(rows: Iterable[Sequence[float]], *, tf_ms: int, since_ms: int | None,
                server_time_ms: int) -> list[Bar]:
    """Validated rows -> sorted, de-duplicated Bars that opened at/after ``since_ms`` and are
    closed by the exchange's clock: ``ts_ms + tf_ms <= server_time_ms``.

    Duplicates (same open time) keep the last copy the exchange sent.
    """
    by_ts: dict[int, Bar] = {}
    for row in rows:
        ts = int(row[0])
        if since_ms is not None and ts < since_ms:
            continue
        if ts + tf_ms > server_time_ms:
            continue  # still in progress (or from the future): never use it
        by_ts[ts] = Bar(ts, float(row[1]), float(row[2]), float(row[3]), float(row[4]), float(row[5]))
    return [by_ts[ts] for ts in sorted(by_ts)]
