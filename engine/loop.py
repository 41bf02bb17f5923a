"""The bar loop, shared by backtests and paper trading (only the feed differs).

Per bar, in this order (DESIGN.md "Execution"):
1. pending orders from earlier closes fill on this bar's prices (broker);
2. the strategy sees the closed bar and may submit orders through ``ctx``
   (this engine), which fill from the next bar on;
3. equity is marked at the bar's close.

Bars before ``trade_from_ms`` are warm-up: the strategy sees them (indicators,
features, models warm up) but any order it submits is discarded, and no equity
is recorded. This is how a paper run's history and ``--trade-from`` work.
"""
from __future__ import annotations

import functools
import gc
from dataclasses import dataclass, field
from typing import Iterable

from engine.broker import BrokerConfig, OrderRejected, SimulatedBroker
from engine.portfolio import Portfolio
from engine.columns import Column, SignalLog
from engine.types import Bar, EquityPoint, Fill, Order, OrderType, Side, SignalPoint, Trade
from feeds.validation import DataError
from strategies.base import Strategy


# SignalPoint from a plain tuple via tuple.__new__ (a C call): one is made per bar.
_new_signal = functools.partial(tuple.__new__, SignalPoint)


@dataclass
class EngineEvents:
    """Everything a run produced, in the order it happened. Append-only.

    The per-bar columns are typed arrays and the signals a columnar :class:`SignalLog`:
    8 bytes per value instead of a Python object per bar (a 1M-bar run stays in memory).
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

    def __post_init__(self) -> None:  # plain lists given by callers (tests, adapters) become columns too
        if not isinstance(self.signals, SignalLog):
            self.signals = SignalLog(self.signals)
        for name, code in (("equity_ts_ms", "q"), ("equity_cash", "d"), ("equity_position", "d"),
                           ("equity_close", "d"), ("equity_quote", "d")):
            if not isinstance(getattr(self, name), Column):
                setattr(self, name, Column(code, getattr(self, name)))

    def equity_point(self, i: int) -> EquityPoint:
        return EquityPoint(self.equity_ts_ms[i], self.equity_cash[i], self.equity_position[i],
                           self.equity_close[i], self.equity_quote[i])


class Engine:
    """Runs one strategy over a stream of bars; also the ``ctx`` a strategy acts through."""

    def __init__(self, strategy: Strategy, config: BrokerConfig = BrokerConfig(),
                 *, trade_from_ms: int | None = None, order_prefix: str = "o") -> None:
        self.strategy = strategy
        self.config = config
        self.portfolio = Portfolio(config.cash_quote)
        self.broker = SimulatedBroker(config, self.portfolio)
        self.events = EngineEvents()
        self.trade_from_ms = trade_from_ms
        self.bar: Bar | None = None
        self.bar_index = -1
        self.trading = trade_from_ms is None
        self._order_prefix = order_prefix
        self._order_seq = 0
        self._last_ts = -(2**63)
        # Bound appends of the equity columns: the per-bar mark is the hottest code in a run.
        ev = self.events
        self._mark_ts, self._mark_cash = ev.equity_ts_ms.append, ev.equity_cash.append
        self._mark_position, self._mark_close = ev.equity_position.append, ev.equity_close.append
        self._mark_equity = ev.equity_quote.append
        self._add_signal = ev.signals.append
        self._started = False
        self._stopped = False

    # ---- running -------------------------------------------------------------------
    def run(self, bars: Iterable[Bar]) -> EngineEvents:
        """Feed every bar, then stop the strategy. Returns the run's events."""
        self.begin()
        step = self.step
        old_threshold = gc.get_threshold()
        # The loop makes many small acyclic objects; frequent young-generation collections
        # only cost time (about 1/3 of the loop on 1M bars), so collect far less often.
        gc.set_threshold(100_000, 50, 100)
        try:
            for bar in bars:
                step(bar)
        finally:
            gc.set_threshold(*old_threshold)
        self.end()
        return self.events

    def begin(self) -> None:
        """Call the strategy's on_start once."""
        if not self._started:
            self._started = True
            self.strategy.on_start(self)

    def end(self) -> None:
        """Call the strategy's on_stop once."""
        if not self._stopped:
            self._stopped = True
            self.strategy.on_stop(self)

    def step(self, bar: Bar) -> None:
        """Process one closed bar: fills, then the strategy's decision, then the mark."""
        ts = bar.ts_ms
        if ts <= self._last_ts:
            raise DataError(f"bars out of order: {ts} after {self._last_ts}")
        self._last_ts = ts
        self.bar_index += 1
        if self.broker.pending:
            fills, trades = self.broker.process(bar, self.bar_index)
            if fills:
                self.events.fills.extend(fills)
                self.events.trades.extend(trades)
        self.bar = bar
        if not self.trading and ts >= self.trade_from_ms:  # type: ignore[operator]
            self.trading = True
        self.strategy.on_bar(bar, self)
        if self.trading:
            pf = self.portfolio
            cash, qty, close = pf.cash_quote, pf.position_qty, bar.close
            self._mark_ts(ts)
            self._mark_cash(cash)
            self._mark_position(qty)
            self._mark_close(close)
            self._mark_equity(cash + qty * close)

    # ---- the strategy's view (ctx) -------------------------------------------------------
    @property
    def position_qty(self) -> float:
        """Signed base quantity held after this bar's fills."""
        return self.portfolio.position_qty

    @property
    def cash_quote(self) -> float:
        return self.portfolio.cash_quote

    @property
    def equity_quote(self) -> float:
        """Equity marked at the current bar's close."""
        assert self.bar is not None
        return self.portfolio.equity(self.bar.close)

    @property
    def avg_entry_price(self) -> float:
        return self.portfolio.avg_entry_price

    @property
    def bars_in_position(self) -> int | None:
        """Bars since the current position's first fill (0 on the fill bar), None when flat."""
        entry = self.portfolio.open_trade_entry_bar()
        return None if entry is None else self.bar_index - entry

    @property
    def pending_orders(self) -> list[Order]:
        return list(self.broker.pending)

    def target_percent(self, fraction: float, reason: str, **info: float | int | None) -> Order | None:
        """Market order to hold ``fraction`` of equity (signed) after the next open.

        Sized at the fill: qty = fraction × equity / (open' × (1 + fee)), where open'
        is the slipped next open — so 1.0 from flat spends exactly the cash.
        """
        if fraction < 0 and self.config.long_only:
            raise OrderRejected("short orders are not allowed with long_only")
        return self._submit(OrderType.MARKET, reason, target_fraction=float(fraction), **info)

    def close(self, reason: str, **info: float | int | None) -> Order | None:
        """Market order that flattens the position at the next open."""
        return self._submit(OrderType.MARKET, reason, target_fraction=0.0, **info)

    def market(self, side: Side, qty: float, reason: str, **info: float | int | None) -> Order | None:
        return self._submit(OrderType.MARKET, reason, side=side, qty=_positive(qty), **info)

    def stop(self, side: Side, price: float, reason: str, qty: float | None = None,
             oco_group: str | None = None, **info: float | int | None) -> Order | None:
        """Stop order; without ``qty`` it closes the whole position (a protective stop)."""
        return self._priced(OrderType.STOP, side, price, reason, qty, oco_group, info)

    def limit(self, side: Side, price: float, reason: str, qty: float | None = None,
              oco_group: str | None = None, **info: float | int | None) -> Order | None:
        """Limit order; without ``qty`` it closes the whole position (a take-profit)."""
        return self._priced(OrderType.LIMIT, side, price, reason, qty, oco_group, info)

    def cancel_all(self) -> None:
        self.broker.cancel_all()

    def record_signal(self, signal: float, threshold: float | None = None,
                      unusualness: float | None = None, model_version: int | None = None) -> None:
        """Store what the strategy saw at this close (for reports and audits)."""
        if self.trading:
            self._add_signal(_new_signal((self._last_ts, signal, threshold, unusualness, model_version)))

    def _priced(self, type_: OrderType, side: Side, price: float, reason: str, qty: float | None,
                oco_group: str | None, info: dict) -> Order | None:
        if not price > 0:
            raise OrderRejected(f"{type_.value} price must be positive, got {price!r}")
        if qty is None:
            return self._submit(type_, reason, side=side, target_fraction=0.0, price=price, oco_group=oco_group, **info)
        return self._submit(type_, reason, side=side, qty=_positive(qty), price=price, oco_group=oco_group, **info)

    def _submit(self, type_: OrderType, reason: str, **fields) -> Order | None:
        if not self.trading:
            return None
        assert self.bar is not None
        self._order_seq += 1
        order = Order(client_id=f"{self._order_prefix}{self._order_seq}", created_ts_ms=self.bar.ts_ms,
                      type=type_, reason=reason, **fields)
        self.broker.submit(order)
        self.events.orders.append(order)
        return order


def _positive(qty: float) -> float:
    if not qty > 0:
        raise OrderRejected(f"order quantity must be positive, got {qty!r}")
    return float(qty)
