"""One backtest, start to finish, without I/O: bars + strategy + costs → events and metrics.

Fill timing: the strategy decides at each bar's close; market orders fill at the
next bar's open (see engine/broker.py). Metrics cover the traded period only
(bars from ``trade_from_ms``), always beside buy-and-hold on the same bars.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from operator import attrgetter, mul
from typing import Any

from domain.events import ChunkListener, EngineEvents
from domain.heap import release_free_heap
from domain.series import BarSeries
from engine.broker import BrokerConfig
from engine.loop import Engine
from engine.metrics import BuyAndHold, BuyAndHoldInputs, Metrics, bars_per_year, buy_and_hold, compute_metrics
from strategies.base import Strategy

ENGINES = ("native", "backtrader")
_FEE, _QTY, _PRICE = attrgetter("fee_quote"), attrgetter("qty"), attrgetter("price")


@dataclass
class BacktestResult:
    events: EngineEvents
    order_status: dict[str, str]
    metrics: Metrics
    baseline: BuyAndHold  # buy-and-hold over the same traded bars
    start_ts: int | None
    end_ts: int | None

    @property
    def buy_and_hold(self) -> Metrics:
        """Buy-and-hold's metrics (the ``buy_and_hold`` key of --json and of the stored report)."""
        return self.baseline.metrics

    def baseline_report(self) -> dict[str, Any]:
        """What every run stores about its baseline: buy-and-hold's metrics and the inputs that,
        with the run's stored closes, redraw its curve exactly (see ``engine.metrics.buy_and_hold``)."""
        return {"buy_and_hold": self.buy_and_hold.to_dict(),
                "buy_and_hold_inputs": self.baseline.curve.inputs.to_dict()}


def run_backtest(series: BarSeries, strategy: Strategy, config: BrokerConfig, *, engine: str = "native",
                 trade_from_ms: int | None = None, on_chunk: ChunkListener | None = None) -> BacktestResult:
    """Run ``strategy`` over ``series`` in the chosen engine and measure it. ``on_chunk`` sees the
    native engine's events as they grow (domain.events.ChunkListener); backtrader's come only at the end."""
    strategy.prepare_backtest(series)
    if engine == "native":
        eng = Engine(strategy, config, trade_from_ms=trade_from_ms)
        events = eng.run_series(series, on_chunk)
        status = dict(eng.broker.status)
    elif engine == "backtrader":
        from engine.backtrader_adapter import run_in_backtrader

        bt_result = run_in_backtrader(strategy, series, config, trade_from_ms=trade_from_ms)
        events, status = bt_result.events, bt_result.order_status
    else:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    release_free_heap()  # the loop's freed heap (~65 MB on 1M bars), before metrics, report and storage
    return measure(series, events, status, config, trade_from_ms)


def measure(series: BarSeries, events: EngineEvents, order_status: dict[str, str], config: BrokerConfig,
            trade_from_ms: int | None = None) -> BacktestResult:
    """Metrics of a finished run and of buy-and-hold over the same traded bars.

    ``equity_floor_hit`` (and ``equity_floor_ts``, the close at which equity first reached
    zero or below) say whether the run was stopped and closed out by the equity floor.
    """
    bpy = bars_per_year(series.timeframe_ms)
    fills = events.fills  # summed in order, as a loop over them would (C-level passes: ~97k fills on 1M bars)
    fees = sum(map(_FEE, fills))
    turnover = sum(map(mul, map(_QTY, fills), map(_PRICE, fills)))
    metrics = compute_metrics(events.equity_quote, events.trades, bpy, config.cash_quote,
                              events.equity_position, fees, turnover)
    metrics = replace(metrics, equity_floor_hit=events.equity_floor_ts is not None,
                      equity_floor_ts=events.equity_floor_ts)
    traded = series if trade_from_ms is None else series.between(trade_from_ms, None)
    bh = buy_and_hold_of(traded, config)
    start = events.equity_ts_ms[0] if events.equity_ts_ms else None
    end = events.equity_ts_ms[-1] if events.equity_ts_ms else None
    return BacktestResult(events, order_status, metrics, bh, start, end)


def buy_and_hold_of(series: BarSeries, config: BrokerConfig) -> BuyAndHold:
    """Buy-and-hold over ``series`` under the run's cash, fee and slippage (a pure function of the bars)."""
    inputs = BuyAndHoldInputs.of_bars(series.ts_ms, series.open, config.cash_quote, config.fee_bps,
                                      config.slippage_bps)
    return buy_and_hold(series.close, inputs, bars_per_year(series.timeframe_ms))


def buy_and_hold_metrics(series: BarSeries, config: BrokerConfig) -> Metrics:
    """Buy-and-hold's metrics over ``series`` (no closed round trip; one open position)."""
    return buy_and_hold_of(series, config).metrics
