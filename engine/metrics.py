"""Performance metrics as pure functions of an equity curve and trades (STYLE.md §4).

Annualisation uses bars per year of the data's own interval (hourly crypto trades
24/7: 8,760 bars a year, not 252). Risk-free rate is 0.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from domain.types import Trade

MS_PER_YEAR = 365.0 * 24 * 3600 * 1000


def bars_per_year(timeframe_ms: int) -> float:
    """E.g. 1h bars → 8,760; 1m bars → 525,600."""
    if timeframe_ms <= 0:
        raise ValueError(f"timeframe must be positive, got {timeframe_ms} ms")
    return MS_PER_YEAR / timeframe_ms


def compute_metrics(equity_quote: Sequence[float] | np.ndarray, trades: Sequence[Trade],
                    bars_per_year: float, initial_cash_quote: float,
                    position_qty: Sequence[float] | np.ndarray | None = None,
                    fees_paid_quote: float = 0.0, turnover_quote: float = 0.0) -> dict[str, float | int | None]:
    """All DESIGN.md metrics for one equity curve (marked at each bar close).

    Returns are bar-to-bar simple returns of equity, the first measured against
    ``initial_cash_quote``. Ratios that are undefined (no variance, no losing
    trade) are None rather than inf, so they serialise to JSON.

    ``trades`` counts CLOSED round trips (entry → exit) only, and the trade statistics
    (win rate, profit factor, averages) are over those. A position still open at the
    last bar is not a trade: it is reported separately as ``open_trade`` (1 or 0) and
    ``open_position_qty`` (signed base quantity), and its unrealised P&L is in the
    equity (marked to the last close, no exit fee).
    """
    eq = np.asarray(equity_quote, dtype=float)
    n = len(eq)
    out: dict[str, float | int | None] = {"bars": n}
    if n == 0:
        return out | {"total_return": 0.0, "trades": len(trades), "open_trade": 0, "open_position_qty": 0.0}
    curve = np.concatenate(([initial_cash_quote], eq))
    rets = curve[1:] / curve[:-1] - 1.0
    years = n / bars_per_year
    final = float(eq[-1])
    total_return = final / initial_cash_quote - 1.0
    out["final_equity"] = final
    out["total_return"] = total_return
    if final > 0 and years > 0:
        log_growth = math.log(final / initial_cash_quote) / years
        out["cagr"] = math.expm1(log_growth) if log_growth < 709.0 else None  # short runs can overflow
    else:
        out["cagr"] = -1.0
    std = float(np.std(rets, ddof=1)) if n > 1 else 0.0
    mean = float(np.mean(rets))
    out["volatility"] = std * math.sqrt(bars_per_year)
    out["sharpe"] = mean / std * math.sqrt(bars_per_year) if std > 0 else None
    downside = float(np.sqrt(np.mean(np.minimum(rets, 0.0) ** 2)))
    out["sortino"] = mean / downside * math.sqrt(bars_per_year) if downside > 0 else None
    dd, dd_bars = max_drawdown(curve)
    out["max_drawdown"] = dd
    out["max_drawdown_bars"] = dd_bars
    out["max_drawdown_days"] = dd_bars * 365.0 / bars_per_year
    cagr = out["cagr"]
    out["calmar"] = cagr / abs(dd) if dd < 0 and cagr is not None else None
    out |= trade_stats(trades)
    if position_qty is not None:
        pos = np.asarray(position_qty, dtype=float)
        out["exposure"] = float(np.mean(pos != 0.0)) if len(pos) else 0.0
        out["open_trade"] = int(len(pos) > 0 and pos[-1] != 0.0)
        out["open_position_qty"] = float(pos[-1]) if len(pos) else 0.0
    out["fees_paid"] = fees_paid_quote
    out["turnover"] = turnover_quote / initial_cash_quote
    return out


def max_drawdown(curve: np.ndarray) -> tuple[float, int]:
    """Deepest fall from a running peak (≤ 0, a fraction) and the longest time under water, in bars."""
    if len(curve) == 0:
        return 0.0, 0
    peaks = np.maximum.accumulate(curve)
    dd = float(np.min(curve / peaks - 1.0))
    under = curve < peaks
    longest = run = 0
    for flag in under:  # runs of bars below the previous peak
        run = run + 1 if flag else 0
        longest = max(longest, run)
    return dd, longest


def trade_stats(trades: Sequence[Trade]) -> dict[str, float | int | None]:
    """Count, win rate, profit factor and averages of round trips (net of fees)."""
    pnl = np.array([t.pnl_quote for t in trades], dtype=float)
    if len(pnl) == 0:
        return {"trades": 0, "win_rate": None, "profit_factor": None, "avg_trade": None, "avg_trade_pct": None}
    wins = pnl[pnl > 0].sum()
    losses = -pnl[pnl < 0].sum()
    return {
        "trades": len(pnl),
        "win_rate": float(np.mean(pnl > 0)),
        "profit_factor": float(wins / losses) if losses > 0 else None,
        "avg_trade": float(pnl.mean()),
        "avg_trade_pct": float(np.mean([t.return_pct for t in trades])),
    }


def buy_and_hold_equity(opens: np.ndarray, closes: np.ndarray, cash_quote: float, fee_bps: float,
                        slippage_bps: float = 0.0) -> np.ndarray:
    """Equity of buy-and-hold under the engine's rules, without running the engine.

    Decided at the first close, filled at the second bar's open (slipped),
    q = cash / (price × (1 + fee)); marked at every close; no exit fee.
    """
    n = len(closes)
    eq = np.full(n, float(cash_quote))
    if n < 2:
        return eq
    price = opens[1] * (1.0 + slippage_bps / 10_000.0)
    fee_rate = fee_bps / 10_000.0
    qty = cash_quote / (price * (1.0 + fee_rate))
    cash_left = cash_quote - qty * price - qty * price * fee_rate
    eq[1:] = cash_left + qty * np.asarray(closes[1:], dtype=float)
    return eq
