"""The backtest runner: the one place that wires bars, a registered strategy and the engine.

Fill timing (DESIGN.md): decisions at each bar's close, market orders fill at the
next bar's open (± slippage), ``fee_bps`` of notional per fill. Metrics start at
the first bar the strategy can trade (``first_decision_ts``, e.g. after the score
strategy's first training window) or at ``trade_from_ms``, whichever is later;
bars before only warm the strategy up.

``run_backtest.py`` and the sweep workers call :func:`execute`. Storing a run is
app/stored_backtest.py's job: this module imports no store, so a sweep worker that
only executes starts without SQLAlchemy.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from app.registry import StrategySpec, get_spec
from domain.events import ChunkListener
from engine.backtest import BacktestResult, run_backtest
from engine.broker import BrokerConfig
from domain.series import BarSeries
from domain.times import ms_to_text
from feeds.validation import DataError
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
            strategy: Strategy | None = None, on_chunk: ChunkListener | None = None) -> BacktestOutcome:
    """Run one backtest start to finish without touching the store (``on_chunk``: see
    :func:`engine.backtest.run_backtest`)."""
    spec, params, broker = resolve(request)
    if strategy is None:
        strategy = spec.build(params, series.timeframe_ms)
    trade_from = tradable_start(strategy, series, request.trade_from_ms)
    if progress is not None and (models := spec.model_count(strategy, series)) > 0:  # no bar without models
        spec.watch_models(strategy, progress(models))
    result = run_backtest(series, strategy, broker, engine=request.engine, trade_from_ms=trade_from,
                          on_chunk=on_chunk)
    report: dict[str, Any] = result.baseline_report()  # buy-and-hold's metrics and the inputs of its curve
    if request.with_report and spec.report is not None:
        report.update(spec.report(strategy, series, broker, result, trade_from))
    return BacktestOutcome(request, spec, params, strategy, series, trade_from, result, report)
