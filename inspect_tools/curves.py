"""Series a report draws: equity, drawdown, the buy-and-hold benchmark, and point thinning.

Buy-and-hold follows ``engine.metrics.buy_and_hold_equity`` (decided at the first
close, all in at the next bar's open with the run's fee and slippage, marked at
every close, no exit fee). A backtest stores only closes, not opens, so for
backtests the next open is approximated by the first bar's close (the two differ
by the overnight gap of one bar); a paper run's stored candles give the exact
opens. The exact buy-and-hold *metrics* are the ones stored in report.baselines.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from engine.metrics import buy_and_hold_equity
from inspect_tools.queries import drawdown

DEFAULT_FEE_BPS = 10.0  # DESIGN.md default, used when a run's parameters do not say


@dataclass(frozen=True)
class Benchmark:
    equity: np.ndarray
    drawdown: np.ndarray
    note: str


def buy_and_hold(ts_ms: np.ndarray, closes: np.ndarray, bars: Sequence[dict[str, Any]], initial_cash: float,
                 fee_bps: float | None, slippage_bps: float | None) -> Benchmark:
    """Buy-and-hold equity on the same bars as the run's equity rows (see module docstring)."""
    fee = DEFAULT_FEE_BPS if fee_bps is None else float(fee_bps)
    slip = 0.0 if slippage_bps is None else float(slippage_bps)
    open_by_ts = {b["ts"]: b["open"] for b in bars}
    if len(ts_ms) and all(int(t) in open_by_ts for t in ts_ms):
        opens = np.array([open_by_ts[int(t)] for t in ts_ms], dtype=float)
        how = "all in at the second bar's open (stored candles)"
    else:
        opens = np.concatenate((closes[:1], closes[:-1])).astype(float)
        how = "all in at the first bar's close (approximates the next open: backtests store no opens)"
    curve = buy_and_hold_equity(opens, closes, initial_cash, fee, slip)
    note = f"Buy-and-hold: {how}, fee {fee:g} bps, slippage {slip:g} bps, no exit fee."
    return Benchmark(curve, drawdown(curve, initial_cash), note)


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
    return np.unique(np.minimum(keep, n - 1))
