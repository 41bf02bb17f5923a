"""What a run produces: the per-bar result of one engine step, and the whole run's record.

Both are ground types so that the engine (which makes them), the application layer
(which commits them) and the store (which writes them) share them without importing
each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from domain.columns import Column, SignalLog
from domain.types import Bar, EquityPoint, Fill, Order, SignalPoint, Trade


@dataclass(frozen=True, slots=True)
class StepResult:
    """Everything one closed bar changed, in the order the engine did it.

    - ``fills`` and ``trades``: orders from earlier closes that filled on this bar's
      prices, and the round trips those fills closed;
    - ``orders``: orders the strategy submitted at this bar's close (fill from the next bar);
    - ``status_changes``: client id → status after this bar, for every order whose
      status changed on it (new orders included, e.g. ``{"o7": "submitted"}``);
    - ``equity``: the mark at this close (None on warm-up bars, which are not traded);
    - ``signals``: what the strategy recorded at this close;
    - ``equity_floor_hit``: True on the bar whose close first marked equity <= 0.
    """

    bar: Bar
    bar_index: int
    fills: tuple[Fill, ...]
    trades: tuple[Trade, ...]
    orders: tuple[Order, ...]
    status_changes: Mapping[str, str]
    equity: EquityPoint | None
    signals: tuple[SignalPoint, ...]
    equity_floor_hit: bool = False


@dataclass
class EngineEvents:
    """Everything a run produced, in the order it happened. Append-only.

    The per-bar columns are typed arrays and the signals a columnar :class:`SignalLog`
    (the backtest's fast path): 8 bytes per value instead of a Python object per bar, so a
    1M-bar run stays small in memory. ``equity_floor_ts`` is the close at which equity first
    reached zero or below (the run then stopped trading and closed out), None when it never did.
    """

    orders: list[Order] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    signals: SignalLog = field(default_factory=SignalLog)
    equity_ts_ms: Column = field(default_factory=lambda: Column("q"))
    equity_cash: Column = field(default_factory=lambda: Column("d"))
    equity_position: Column = field(default_factory=lambda: Column("d"))
    equity_close: Column = field(default_factory=lambda: Column("d"))
    equity_quote: Column = field(default_factory=lambda: Column("d"))
    equity_floor_ts: int | None = None

    def __post_init__(self) -> None:  # plain lists given by callers (tests, adapters) become columns too
        if not isinstance(self.signals, SignalLog):
            self.signals = SignalLog(self.signals)
        for name, code in (("equity_ts_ms", "q"), ("equity_cash", "d"), ("equity_position", "d"),
                           ("equity_close", "d"), ("equity_quote", "d")):
            if not isinstance(getattr(self, name), Column):
                setattr(self, name, Column(code, getattr(self, name)))


ChunkListener = Callable[[EngineEvents, Mapping[str, str]], None]
"""Called by a backtest between chunks of bars with the events so far and each order's status.

Why: a store can write what is already final (fills, trades, orders no longer open) while
the loop goes on, instead of all of it after the run. The listener runs on the loop's
thread and may only read: ``EngineEvents`` only grows, and an order whose status is in
:data:`domain.types.FINAL_STATUSES` never changes again.
"""
