"""Paper trading = the backtest engine fed by a live feed, committing every closed bar.

There is no paper-specific trading logic: :class:`PaperSession` wraps the same
:class:`engine.loop.Engine` and simulated broker a backtest uses, and adds only
persistence (this is the application layer: it wires the engine to the store).
Each bar's :class:`domain.events.StepResult` (new orders and status changes,
fills, trades, the equity mark, signals) plus the strategy's new model versions
is committed together with the candle itself and the run's "last processed
bar" in ONE transaction. Restart = replay the stored candles through a fresh
engine (deterministic: same candles, same models → same state), check the
replay matches what is stored, then continue with the next candle.

Warm-up candles (before ``trade_from_ms``) cannot create orders, so they are
committed in batches for speed; a crash mid-warm-up resumes after the last batch.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable

from sqlalchemy import Engine as DbEngine

from domain.events import StepResult
from domain.records import ModelVersionRecord
from domain.series import BarSeries
from domain.types import Bar, Order
from engine.backtest import measure
from engine.broker import BrokerConfig
from engine.loop import Engine
from store.repository import (BarCommit, commit_bars, count_rows, last_stored_state, load_run_bars, mark_run,
                              stored_fold_indexes, update_run_results)
from strategies.base import Strategy

log = logging.getLogger(__name__)
WARMUP_BATCH_BARS = 1000


class ReplayMismatch(RuntimeError):
    """Replaying the stored candles did not reproduce the stored orders/fills/equity."""


@dataclass(frozen=True)
class BarOutcome:
    """What one live bar did, for the log line."""

    bar: Bar
    live: bool
    orders: list[Order]
    fills: int
    equity: float | None
    signal: float | None
    threshold: float | None


class PaperSession:
    def __init__(self, db: DbEngine, run_id: str, strategy: Strategy, config: BrokerConfig,
                 trade_from_ms: int, lease_token: str | None = None) -> None:
        self.db = db
        self.run_id = run_id
        self.lease_token = lease_token  # every commit checks that this process still owns the run
        self.strategy = strategy
        self.engine = Engine(strategy, config, trade_from_ms=trade_from_ms)
        self.trade_from_ms = trade_from_ms
        self._pending_commits: list[BarCommit] = []
        self._stored_folds: set[int] = stored_fold_indexes(db, run_id)
        self._carried_versions: list[ModelVersionRecord] = []
        self._trade_seq = 0  # sequence number of the next closed trade in this run
        self.engine.begin()

    @property
    def last_bar(self) -> Bar | None:
        return self.engine.bar

    def replay(self, bars: Iterable[Bar]) -> int:
        """Rebuild state from stored candles without writing; verify it against the DB."""
        n = 0
        for bar in bars:
            self.engine.step(bar)
            n += 1
        self._carried_versions = self._drain_model_versions()  # any not yet stored go with the next commit
        self._trade_seq = len(self.engine.events.trades)
        self._check_replay()
        return n

    def process(self, bar: Bar, on_outcome: Callable[[BarOutcome], None] | None = None) -> BarOutcome:
        """Step the engine on one closed candle and persist what it changed."""
        step = self.engine.step(bar)
        commit = bar_commit(step, self._trade_seq, self._take_model_versions())
        self._trade_seq += len(step.trades)
        live = bar.ts_ms >= self.trade_from_ms
        self._pending_commits.append(commit)
        if live or len(self._pending_commits) >= WARMUP_BATCH_BARS:
            self.flush()
        sig = step.signals[-1] if step.signals else None
        outcome = BarOutcome(bar, live, list(step.orders), len(step.fills),
                             step.equity.equity_quote if step.equity else None,
                             sig.signal if sig else None, sig.threshold if sig else None)
        if on_outcome is not None:
            on_outcome(outcome)
        return outcome

    def flush(self) -> None:
        """Commit buffered bars (one transaction)."""
        if self._pending_commits:
            commit_bars(self.db, self.run_id, self._pending_commits, lease_token=self.lease_token)
            self._pending_commits = []

    def finish(self, timeframe_ms: int, status: str) -> None:
        """Store metrics of the traded part so far beside buy-and-hold on the same candles, and the status."""
        ev = self.engine.events
        bars = load_run_bars(self.db, self.run_id)
        if ev.equity_ts_ms and len(bars) >= 2:
            series = BarSeries.from_bars(bars, timeframe_ms)
            result = measure(series, ev, self.engine.broker.status, self.engine.config, self.trade_from_ms)
            update_run_results(self.db, self.run_id, metrics=result.metrics.to_dict(),
                               report=result.baseline_report(), status=status,
                               lease_token=self.lease_token)
        else:
            mark_run(self.db, self.run_id, status, lease_token=self.lease_token)

    def _take_model_versions(self) -> list[ModelVersionRecord]:
        carried, self._carried_versions = self._carried_versions, []
        return carried + self._drain_model_versions()

    def _drain_model_versions(self) -> list[ModelVersionRecord]:
        fresh = self.strategy.drain_model_versions()
        out = [r for r in fresh if r.fold_index not in self._stored_folds]
        self._stored_folds.update(r.fold_index for r in out)
        return out

    def _check_replay(self) -> None:
        stored = count_rows(self.db, self.run_id)
        ev = self.engine.events
        replayed = {"orders": len(ev.orders), "fills": len(ev.fills), "trades": len(ev.trades),
                    "equity": len(ev.equity_ts_ms)}
        diff = {k: (stored[k], v) for k, v in replayed.items() if stored[k] != v}
        last = last_stored_state(self.db, self.run_id)
        if not diff and ev.equity_ts_ms and last.get("equity") is not None:
            mine = (ev.equity_ts_ms[-1], ev.equity_cash[-1], ev.equity_position[-1], ev.equity_quote[-1])
            if mine != last["equity"]:
                diff["last equity (ts, cash, position, equity)"] = (last["equity"], mine)
        if not diff and ev.fills and last.get("fill") is not None:
            f = ev.fills[-1]
            mine_fill = (f.ts_ms, f.qty, f.price, f.fee_quote)
            if mine_fill != last["fill"]:
                diff["last fill (ts, qty, price, fee)"] = (last["fill"], mine_fill)
        if diff:
            raise ReplayMismatch("replaying the stored candles does not reproduce the stored run "
                                 f"(table: stored vs replayed {diff}); was the code or a setting changed? "
                                 "Start a new --run-name.")


def bar_commit(step: StepResult, trade_seq_start: int,
               model_versions: list[ModelVersionRecord] | None = None) -> BarCommit:
    """The store's record of one engine step: exactly what the step changed."""
    equity = None
    if step.equity is not None:
        e = step.equity
        equity = {"ts": e.ts_ms, "cash": e.cash_quote, "position": e.position_qty, "close": e.close,
                  "equity": e.equity_quote}
    return BarCommit(bar=step.bar, orders=list(step.orders), status_changes=dict(step.status_changes),
                     fills=list(step.fills), trades=list(step.trades), trade_seq_start=trade_seq_start,
                     equity=equity, signals=list(step.signals), model_versions=list(model_versions or ()))
