"""The small strategy interface (STYLE.md §6).

A strategy is told about each *closed* bar and acts only through ``ctx``; the
same object runs in the native engine, in paper mode and inside backtrader.
Orders submitted in ``on_bar`` fill from the next bar on (never at this close).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Sequence

if TYPE_CHECKING:
    from domain.records import ModelVersionRecord
    from domain.types import Bar, Order, Side


class Context(Protocol):
    """What a strategy may read and do. Implemented by the engine and the backtrader adapter
    (both through ``engine.context.StrategyContext``, whose docstring gives the full rules).

    Every order is decided at the current bar's close and fills from the next bar on:
    - ``target_percent(f)``: hold f × equity (signed) after the next open;
    - ``close()``: flatten at the next open; ``market(side, qty)``: an absolute size;
    - ``stop/limit(side, price)`` without a size: a protective exit; placed at the same
      close as an entry it is that entry's bracket (lives until the entry is cancelled or
      expires, or until its position closes);
    - ``limit(side, price, target_fraction=f, expire_after_bars=N)``: a passive entry that
      fills only when a later bar trades through ``price`` (the open if it gaps through),
      pays the maker fee when it rested, and expires after N bars unfilled.
    """

    position_qty: float
    cash_quote: float
    equity_quote: float
    bars_in_position: int | None

    @property
    def pending_orders(self) -> "list[Order]":
        """Orders submitted and not yet filled, cancelled or expired (a copy)."""
        ...

    def target_percent(self, fraction: float, reason: str, **info: Any) -> "Order | None": ...
    def close(self, reason: str, **info: Any) -> "Order | None": ...
    def market(self, side: "Side", qty: float, reason: str, **info: Any) -> "Order | None": ...
    def stop(self, side: "Side", price: float, reason: str, qty: float | None = None,
             oco_group: str | None = None, *, target_fraction: float | None = None,
             expire_after_bars: int | None = None, **info: Any) -> "Order | None": ...
    def limit(self, side: "Side", price: float, reason: str, qty: float | None = None,
              oco_group: str | None = None, *, target_fraction: float | None = None,
              expire_after_bars: int | None = None, **info: Any) -> "Order | None": ...
    def cancel_all(self) -> None: ...
    def record_signal(self, signal: float, threshold: float | None = None,
                      unusualness: float | None = None, model_version: int | None = None) -> None: ...
    def record_signals(self, ts_ms: Sequence[int], signal: Sequence[float], threshold: float | None = None,
                       unusualness: float | None = None, model_version: int | None = None) -> None: ...


class Strategy:
    """Base class with no-op hooks. Subclasses set ``name`` and a frozen ``config``."""

    name: str = "strategy"
    config: Any = None

    def warmup_bars(self, timeframe_ms: int) -> int:
        """Bars of history the strategy needs before its first decision (paper runs fetch this many)."""
        return 2

    def first_decision_ts(self, first_bar_ts: int) -> int | None:
        """Earliest bar it can trade given the first bar it sees (None: no limit). Metrics start there."""
        return None

    def prepare_backtest(self, series: Any) -> None:
        """Backtest fast path: the whole series before the run, for causal precomputation only
        (each value may use bars up to its own). Paper runs never call it."""

    def quiet_bars(self, position_qty: float, limit: int) -> int:
        """Backtest fast path (after :meth:`prepare_backtest`): how many of the next bars, at most
        ``limit``, on_bar would pass without an order or any change but recording its signal, given
        this position and no pending order. The engine then hands those bars to :meth:`skip_bars`
        in one call. 0 (the default): the engine shows the strategy every bar."""
        return 0

    def skip_bars(self, count: int, ctx: Context) -> None:
        """Pass ``count`` bars that :meth:`quiet_bars` promised. What on_bar would have recorded for
        them is the strategy's to record with ``ctx.record_signals``: now, or with the run's other
        signals in on_stop (as the z-score strategy does: one call for the whole run)."""
        raise NotImplementedError(f"{type(self).__name__} promised quiet bars but cannot skip them")

    def drain_model_versions(self) -> "list[ModelVersionRecord]":
        """Models fitted or reused since the last call, once each (none by default). A paper run
        stores them with the next bar's commit, so a restart reloads them instead of retraining."""
        return []

    def on_start(self, ctx: Context) -> None:
        """Called once before the first bar."""

    def on_bar(self, bar: "Bar", ctx: Context) -> None:
        """Called at the close of every bar, after that bar's fills."""

    def on_stop(self, ctx: Context) -> None:
        """Called once after the last bar."""
