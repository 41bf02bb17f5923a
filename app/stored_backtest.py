"""A backtest as the store keeps it: the run row first, then the run, then all of it in one transaction.

Why apart from app/backtest.py: executing needs no database (a sweep worker only
executes; its driver stores), and a worker should not import SQLAlchemy to start.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from app.backtest import BacktestOutcome, BacktestRequest, ProgressFactory, execute, resolve, tradable_start
from app.registry import config_dict
from domain.series import BarSeries
from domain.times import timeframe_name
from store.repository import (BacktestWriter, RunSpec, backtest_writer, create_run, mark_run, refuse_taken_name,
                              streams_while_running)
from store.db import error_line
from store.lease import DEFAULT_STALE_AFTER_S, LeaseKeeper, LeaseOwner
from strategies.base import Strategy

log = logging.getLogger(__name__)


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
    me = LeaseOwner.me()
    run_id = create_run(db, run_spec(request, series, params, strategy, name=name, extra=extra),
                        extra_rows=[me.new_row()])
    # The owner row beats while the run goes, as a paper run's does: a row left 'running' by a killed
    # process, or by a database that went away, is told from a live one (inspect_trades.py: interrupted).
    with LeaseKeeper(db, run_id, me.token, DEFAULT_STALE_AFTER_S / 4):
        try:
            if streams_while_running(db) and request.engine == "native":  # rows go to the server during the loop
                with backtest_writer(db, run_id) as writer:
                    outcome = execute(request, series, progress=progress, strategy=strategy,
                                      on_chunk=writer.add_final)
                    _finish(writer, outcome)
            else:
                outcome = execute(request, series, progress=progress, strategy=strategy)
                save_outcome(db, run_id, outcome)
        except BaseException as exc:
            _mark_failed(db, run_id, exc)
            raise  # the run's own error, not a failure to mark it, is what the caller reports
    return run_id, outcome


def _mark_failed(db: Any, run_id: str, exc: BaseException) -> None:
    """Mark the run failed with its error. If the database itself failed (the server went away), the
    row stays 'running' and its owner row says the process is gone."""
    try:
        mark_run(db, run_id, "failed", f"{type(exc).__name__}: {exc}")
    except Exception as marking:
        log.info("run %s could not be marked failed (%s: %s)", run_id[:8], type(marking).__name__,
                 error_line(marking))


def save_outcome(db: Any, run_id: str, outcome: BacktestOutcome) -> None:
    """Store a finished backtest in one transaction and mark its run completed."""
    with backtest_writer(db, run_id) as writer:
        _finish(writer, outcome)


def _finish(writer: BacktestWriter, outcome: BacktestOutcome) -> None:
    r = outcome.result
    writer.finish(r.events, r.order_status, r.metrics.to_dict(), outcome.report,
                  model_versions=outcome.spec.model_versions(outcome.strategy), start_ts=r.start_ts, end_ts=r.end_ts)
