"""DESIGN.md's z-score rules as one bare Python loop over plain lists: no engine, no objects.

The speed ceiling for a per-bar Python loop, and a third, independent implementation
to check trades and final equity against. Same rules as ``strategies/zscore.py``:
z_t over the last ``window`` returns including r_t (population std); decide at the
close of bar t, fill at O_{t+1}; q = cash / (O·(1+fee)); final equity cash + q·C_last.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LoopResult:
    entries: list[tuple[int, int, float, float]]  # (fill ts_ms, +1 long / -1 short, qty, price)
    exits: int
    final_equity_quote: float


def zscore_loop(ts_ms: list[int], open_: list[float], close: list[float], *, cash_quote: float = 100_000.0,
                fee_bps: float = 10.0, window: int = 50, entry_z: float = 2.0, long_only: bool = False) -> LoopResult:
    """Run the z-score baseline over plain lists; O(1) work per bar (a ring buffer of returns)."""
    fee = fee_bps / 10_000.0
    log, sqrt, fsum = math.log, math.sqrt, math.fsum
    ring = [0.0] * window
    total = total_sq = 0.0
    seen = 0  # returns seen so far
    side, qty = 0, 0.0  # position: direction and base quantity
    action = 0  # decided at the last close: +1 / -1 enter long / short, 2 exit
    entries: list[tuple[int, int, float, float]] = []
    exits = 0
    cash = cash_quote
    prev = close[0]
    for i in range(1, len(close)):
        if action:
            price = open_[i]
            if action == 2:
                cash += side * qty * price - qty * price * fee
                side, qty = 0, 0.0
                exits += 1
            else:
                qty = cash / (price * (1.0 + fee))
                cash -= action * qty * price + qty * price * fee
                side = action
                entries.append((ts_ms[i], action, qty, price))
            action = 0
        c = close[i]
        r = log(c / prev)
        prev = c
        j = seen % window
        old = ring[j]
        ring[j] = r
        seen += 1
        total += r - old
        total_sq += r * r - old * old
        if seen < window:
            continue
        if j == window - 1:  # re-sum exactly once per lap, so rounding cannot drift
            total = fsum(ring)
            total_sq = fsum([x * x for x in ring])
        mean = total / window
        var = total_sq / window - mean * mean
        z = (r - mean) / sqrt(var) if var > 0.0 else 0.0
        if side == 0:
            if z < -entry_z:
                action = 1
            elif z > entry_z and not long_only:
                action = -1
        elif (side > 0 and z > 0.0) or (side < 0 and z < 0.0):
            action = 2
    return LoopResult(entries, exits, cash + side * qty * close[-1])
