"""Deterministic synthetic BTC-like candles for tests and benchmarks (labelled as synthetic).

Log returns follow GARCH(1,1) with Student-t shocks, so volatility clusters as in
real crypto; opens differ slightly from the previous close (as after gaps in real
data) so that fill-at-next-open bugs cannot hide. Same seed → same bars.
"""
from __future__ import annotations

import math

import numpy as np

from domain.series import BarSeries

DEFAULT_START_MS = 1_577_836_800_000  # 2020-01-01 00:00 UTC


def synthetic_bars(n: int, seed: int = 0, timeframe_ms: int = 3_600_000, start_ms: int = DEFAULT_START_MS,
                   start_price: float = 20_000.0, omega: float = 2e-7, alpha: float = 0.08,
                   beta: float = 0.9) -> BarSeries:
    """``n`` hourly-like candles. GARCH: σ²_t = ω + α·r²_{t-1} + β·σ²_{t-1}."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if alpha + beta >= 1.0:
        raise ValueError("alpha + beta must be < 1 for a stationary variance")
    rng = np.random.default_rng(seed)
    shocks = (rng.standard_t(5, size=n) / math.sqrt(5 / 3)).tolist()
    var = omega / (1.0 - alpha - beta)
    rets = [0.0] * n
    for i in range(n):  # the GARCH recursion is inherently sequential
        r = math.sqrt(var) * shocks[i]
        rets[i] = r
        var = omega + alpha * r * r + beta * var
    log_close = math.log(start_price) + np.cumsum(rets)
    close = np.exp(log_close)
    vol = np.sqrt(omega / (1 - alpha - beta)) * np.ones(n)
    gap = rng.normal(0.0, 0.1, size=n) * np.abs(np.asarray(rets))
    open_ = np.empty(n)
    open_[0] = start_price
    open_[1:] = close[:-1] * np.exp(gap[1:])
    wick_hi = np.abs(rng.normal(0.0, 1.0, size=n)) * np.abs(np.asarray(rets)) * 0.5 + vol * 0.1
    wick_lo = np.abs(rng.normal(0.0, 1.0, size=n)) * np.abs(np.asarray(rets)) * 0.5 + vol * 0.1
    high = np.maximum(open_, close) * np.exp(wick_hi)
    low = np.minimum(open_, close) * np.exp(-wick_lo)
    volume = np.exp(rng.normal(6.0, 0.5, size=n) + 30.0 * np.abs(np.asarray(rets)))
    ts = start_ms + np.arange(n, dtype=np.int64) * timeframe_ms
    return BarSeries(ts, open_, high, low, close, volume, timeframe_ms,
                     source=f"synthetic(n={n}, seed={seed})", sha256=None,
                     notes=("SYNTHETIC data (GARCH(1,1) generator), not real market prices",))
