"""One backtest, start to finish, without I/O: bars + strategy + costs → events and metrics.

Fill timing: the strategy decides at each bar's close; market orders fill at the
next bar's open (see engine/broker.py). Metrics cover the traded period only
(bars from ``trade_from_ms``), always beside buy-and-hold on the same bars.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from domain.events import EngineEvents
from domain.series import BarSeries
from engine.broker import BrokerConfig
from engine.loop import Engine
from engine.metrics import bars_per_year, buy_and_hold_equity, compute_metrics
from strategies.base import Strategy

ENGINES = ("native", "backtrader")


@dataclass
class BacktestResult:
    events: EngineEvents
    order_status: dict[str, str]
    metrics: dict[str, Any]
    buy_and_hold: dict[str, Any]
    start_ts: int | None
    end_ts: int | None


def run_backtest(series: BarSeries, strategy: Strategy, config: BrokerConfig, *, engine: str = "native",
                 trade_from_ms: int | None = None) -> BacktestResult:
    """Run ``strategy`` over ``series`` in the chosen engine and measure it."""
    if engine == "native":
        eng = Engine(strategy, config, trade_from_ms=trade_from_ms)
        events = eng.run(series.iter_bars())
        status = dict(eng.broker.status)
    elif engine == "backtrader":
        from engine.backtrader_adapter import run_in_backtrader

        bt_result = run_in_backtrader(strategy, series, config, trade_from_ms=trade_from_ms)
        events, status = bt_result.events, bt_result.order_status
    else:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    return measure(series, events, status, config, trade_from_ms)


def measure(series: BarSeries, events: EngineEvents, order_status: dict[str, str], config: BrokerConfig,
            trade_from_ms: int | None = None) -> BacktestResult:
    """Metrics of a finished run and of buy-and-hold over the same traded bars.

    ``equity_floor_hit`` (and ``equity_floor_ts``, the close at which equity first reached
    zero or below) say whether the run was stopped and closed out by the equity floor.
    """
    bpy = bars_per_year(series.timeframe_ms)
    fees = sum(f.fee_quote for f in events.fills)
    turnover = sum(f.qty * f.price for f in events.fills)
    metrics = compute_metrics(events.equity_quote, events.trades, bpy, config.cash_quote,
                              events.equity_position, fees, turnover)
    metrics["equity_floor_hit"] = events.equity_floor_ts is not None
    metrics["equity_floor_ts"] = events.equity_floor_ts
    traded = series if trade_from_ms is None else series.between(trade_from_ms, None)
    bh = buy_and_hold_metrics(traded, config)
    start = events.equity_ts_ms[0] if events.equity_ts_ms else None
    end = events.equity_ts_ms[-1] if events.equity_ts_ms else None
    return BacktestResult(events, order_status, metrics, bh, start, end)


def buy_and_hold_metrics(series: BarSeries, config: BrokerConfig) -> dict[str, Any]:
    """Buy-and-hold under the same fees and fill rules, as a pure function of the bars."""
    eq = buy_and_hold_equity(series.open, series.close, config.cash_quote, config.fee_bps, config.slippage_bps)
    position = np.zeros(len(eq))
    fee = 0.0
    if len(eq) > 1:
        price = series.open[1] * (1 + config.slippage_bps / 1e4)
        qty = config.cash_quote / (price * (1 + config.fee_bps / 1e4))
        fee = qty * price * config.fee_bps / 1e4
        position[1:] = qty
    out = compute_metrics(eq, [], bars_per_year(series.timeframe_ms), config.cash_quote, position, fee,
                          config.cash_quote if len(eq) > 1 else 0.0)
    # Bought once and never sold: no closed round trip, one open position (metrics.compute_metrics
    # reports it as open_trade = 1; "trades" counts closed round trips only).
    return out
