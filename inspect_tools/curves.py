"""Series a report draws: equity, drawdown, the buy-and-hold benchmark, and point thinning.

The benchmark is the run's stored baseline: ``engine.metrics.buy_and_hold_curve`` (the
function the run itself used) applied to the run's stored closes and its stored
``report.buy_and_hold_inputs`` (cash, fee, slippage and the fill bar's open), so the
curve ends exactly at the stored buy-and-hold ``final_equity``. Runs stored before those
inputs were kept fall back to a paper run's stored candles (exact opens) or, for old
backtests, to the first bar's close as the fill price (approximate; the note says so).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from engine.metrics import BuyAndHoldInputs, buy_and_hold_curve, drawdown

DEFAULT_FEE_BPS = 10.0  # DESIGN.md default, used when an old run's parameters do not say


@dataclass(frozen=True)
class Benchmark:
    equity: np.ndarray
    drawdown: np.ndarray
    note: str
    exact: bool  # True when the curve is the stored baseline (or from stored candles), not an estimate


def buy_and_hold(ts_ms: np.ndarray, closes: np.ndarray, bars: Sequence[dict[str, Any]], initial_cash: float,
                 fee_bps: float | None, slippage_bps: float | None,
                 stored_inputs: Mapping[str, Any] | None = None) -> Benchmark:
    """Buy-and-hold equity on the same bars as the run's equity rows (see module docstring)."""
    inputs = _stored(stored_inputs, ts_ms)
    if inputs is not None:
        how, exact = "the stored baseline (all in at the second bar's open)", True
    else:
        fee = DEFAULT_FEE_BPS if fee_bps is None else float(fee_bps)
        slip = 0.0 if slippage_bps is None else float(slippage_bps)
        open_by_ts = {b["ts"]: b["open"] for b in bars}
        if len(ts_ms) and all(int(t) in open_by_ts for t in ts_ms):
            opens = np.array([open_by_ts[int(t)] for t in ts_ms], dtype=float)
            how, exact = "all in at the second bar's open (stored candles)", True
        else:
            opens = np.concatenate((closes[:1], closes[:-1])).astype(float)
            how, exact = "all in at the first bar's close (approximates the next open: this run stored no opens)", False
        inputs = BuyAndHoldInputs.of_bars(ts_ms, opens, initial_cash, fee, slip)
    curve = buy_and_hold_curve(closes, inputs).equity_quote
    note = (f"Buy-and-hold: {how}, fee {inputs.fee_bps:g} bps, slippage {inputs.slippage_bps:g} bps, "
            "no exit fee.")
    return Benchmark(curve, drawdown(curve, inputs.cash_quote), note, exact)


def _stored(stored: Mapping[str, Any] | None, ts_ms: np.ndarray) -> BuyAndHoldInputs | None:
    """The run's stored baseline inputs, when they belong to these equity rows."""
    if not isinstance(stored, Mapping):
        return None
    try:
        inputs = BuyAndHoldInputs.from_dict(stored)
    except (KeyError, TypeError, ValueError):
        return None
    expected_ts = int(ts_ms[1]) if len(ts_ms) > 1 else None
    return inputs if inputs.entry_ts_ms == expected_ts else None


def thin_indices(values: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of at most ~``max_points`` points that keep every bucket's first, min, max and last.

    Drawing 500k points per line makes a report slow to open; min/max thinning
    keeps every spike and drawdown visible at screen resolution.
    """
    n = len(values)
    if max_points <= 0 or n <= max_points:
        return np.arange(n)
    buckets = max(1, max_points // 4)
    size = -(-n // buckets)  # ceil
    padded = np.concatenate((values, np.full(buckets * size - n, values[-1])))
    grid = padded.reshape(buckets, size)
    base = np.arange(buckets) * size
    keep = np.concatenate((base, base + size - 1, base + np.argmin(grid, axis=1), base + np.argmax(grid, axis=1),
                           [n - 1]))
    keep = np.sort(np.minimum(keep, n - 1))
    # = np.unique(keep), which would also import numpy.ma on first use (~10 ms of a report)
    return keep[np.concatenate(([True], keep[1:] != keep[:-1]))]
