"""The backtest runner: the one place that wires bars, a registered strategy, the engine and the store.

Fill timing (DESIGN.md): decisions at each bar's close, market orders fill at the
next bar's open (± slippage), ``fee_bps`` of notional per fill. Metrics start at
the first bar the strategy can trade (``first_decision_ts``, e.g. after the score
strategy's first training window) or at ``trade_from_ms``, whichever is later;
bars before only warm the strategy up.

``run_backtest.py`` and the sweep workers call :func:`execute`; the CLI adds
:func:`store_outcome` around it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from app.registry import StrategySpec, config_dict, get_spec
from engine.backtest import BacktestResult, run_backtest
from engine.broker import BrokerConfig
from domain.series import BarSeries
from domain.times import ms_to_text, timeframe_name
from feeds.validation import DataError
from store.repository import RunSpec, create_run, mark_run, refuse_taken_name, save_backtest
from strategies.base import Strategy

ModelCallback = Callable[..., None]
ProgressFactory = Callable[[int], ModelCallback]  # number of models the run will fit → per-model callback


@dataclass(frozen=True)
class BacktestRequest:
    """What to run: a strategy by name, its parameters (names as ``--param``), costs and the engine."""

    strategy: str
    params: Mapping[str, Any] = field(default_factory=dict)
    broker: BrokerConfig = BrokerConfig()
    engine: str = "native"
    trade_from_ms: int | None = None  # bars before only warm up
    with_report: bool = True  # the strategy's extra report section (baselines, IC, folds for the score model)


@dataclass
class BacktestOutcome:
    """A finished (unsaved) backtest: the resolved parameters, the strategy object and its results."""

    request: BacktestRequest
    spec: StrategySpec
    params: dict[str, Any]  # every parameter, resolved and typed
    strategy: Strategy
    series: BarSeries
    trade_from_ms: int | None  # where measuring started
    result: BacktestResult
    report: dict[str, Any]  # buy_and_hold plus the strategy's report section

    @property
    def metrics(self) -> dict[str, Any]:
        """The run's metrics as plain data (the ``metrics`` of run_backtest.py --json)."""
        return self.result.metrics.to_dict()


def resolve(request: BacktestRequest) -> tuple[StrategySpec, dict[str, Any], BrokerConfig]:
    """Typed parameters and the broker config; ``long_only`` set on either side applies to both."""
    spec = get_spec(request.strategy)
    b = request.broker
    given = spec.with_broker(request.params, long_only=b.long_only, fee_bps=b.fee_bps,
                             slippage_bps=b.slippage_bps, maker_fee_bps=b.maker_fee_bps)
    params = spec.resolve(given)
    broker = request.broker
    if params.get("long_only") and not broker.long_only:
        broker = dataclasses.replace(broker, long_only=True)
    return spec, params, broker


def measuring_start(strategy: Strategy, series: BarSeries, trade_from: int | None) -> int | None:
    """Measure from the first bar the strategy can trade (the score strategy's first fold), never earlier."""
    first = strategy.first_decision_ts(int(series.ts_ms[0]))
    if first is None:
        return trade_from
    return first if trade_from is None else max(trade_from, first)


def tradable_start(strategy: Strategy, series: BarSeries, trade_from: int | None) -> int | None:
    """``measuring_start``, or DataError when no bar is left to trade (checked before a run row exists)."""
    start = measuring_start(strategy, series, trade_from)
    if start is not None and start > int(series.ts_ms[-1]):
        raise DataError(f"{series.source}: no bars to trade after the warm-up/training window "
                        f"(trading would start {ms_to_text(start, zone=True)}, data ends {ms_to_text(int(series.ts_ms[-1]), zone=True)}); "
                        "load more history or use a shorter --train-days (--param train_days=DAYS)")
    return start


def execute(request: BacktestRequest, series: BarSeries, *, progress: ProgressFactory | None = None,
            strategy: Strategy | None = None) -> BacktestOutcome:
    """Run one backtest start to finish without touching the store."""
    spec, params, broker = resolve(request)
    if strategy is None:
        strategy = spec.build(params, series.timeframe_ms)
    trade_from = tradable_start(strategy, series, request.trade_from_ms)
    if progress is not None and (models := spec.model_count(strategy, series)) > 0:  # no bar without models
        spec.watch_models(strategy, progress(models))
    result = run_backtest(series, strategy, broker, engine=request.engine, trade_from_ms=trade_from)
    report: dict[str, Any] = result.baseline_report()  # buy-and-hold's metrics and the inputs of its curve
    if request.with_report and spec.report is not None:
        report.update(spec.report(strategy, series, broker, result, trade_from))
    return BacktestOutcome(request, spec, params, strategy, series, trade_from, result, report)


def run_spec(request: BacktestRequest, series: BarSeries, params: Mapping[str, Any], strategy: Strategy,
             *, name: str | None = None, extra: Mapping[str, Any] | None = None) -> RunSpec:
    """The run row of a backtest: everything needed to repeat it (STYLE.md §12)."""
    _, _, broker = resolve(request)
    stored = {"strategy": request.strategy, "engine": request.engine, "cash": broker.cash_quote,
              "fee_bps": broker.fee_bps, "maker_fee_bps": broker.maker_fee_bps, "slippage_bps": broker.slippage_bps,
              "long_only": broker.long_only,
              "timeframe_ms": series.timeframe_ms, "trade_from": request.trade_from_ms,
              "strategy_params": dict(params), "config": config_dict(strategy), **(extra or {})}
    return RunSpec(mode="backtest", strategy=request.strategy, initial_cash=broker.cash_quote, params=stored,
                   name=name, engine=request.engine, symbol="BTC/USDT",
                   timeframe=timeframe_name(series.timeframe_ms), data_source=series.source,
                   data_hash=series.sha256, trade_from_ts=request.trade_from_ms)


def run_and_store(db: Any, request: BacktestRequest, series: BarSeries, *, name: str | None = None,
                  extra: Mapping[str, Any] | None = None, progress: ProgressFactory | None = None
                  ) -> tuple[str, BacktestOutcome]:
    """Create the run row (status 'running'), run, and store everything in one transaction.

    Any failure after the row exists marks it 'failed' with the error and writes
    nothing else of it; bad parameters, a taken name or data too short to trade
    fail before any row is written.
    """
    spec, params, _ = resolve(request)
    strategy = spec.build(params, series.timeframe_ms)
    tradable_start(strategy, series, request.trade_from_ms)
    if name is not None:
        refuse_taken_name(db, name)
    run_id = create_run(db, run_spec(request, series, params, strategy, name=name, extra=extra))
    try:
        outcome = execute(request, series, progress=progress, strategy=strategy)
        save_outcome(db, run_id, outcome)
    except BaseException as exc:
        mark_run(db, run_id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    return run_id, outcome


def save_outcome(db: Any, run_id: str, outcome: BacktestOutcome) -> None:
    r = outcome.result
    save_backtest(db, run_id, r.events, r.order_status, r.metrics.to_dict(), outcome.report,
                  model_versions=outcome.spec.model_versions(outcome.strategy), start_ts=r.start_ts, end_ts=r.end_ts)
