"""The strategy's ``ctx``, written once for both engines (the native loop and the backtrader adapter).

Each engine subclasses :class:`StrategyContext` and supplies only where orders go
(``_accept``), how they are cancelled and where the account is read from; the order
API, its checks, bracket links, expiry bookkeeping and the equity floor live here.
"""
from __future__ import annotations

import functools
import math
from bisect import bisect_left
from typing import Any, Callable, Sequence

from domain.columns import plain_numbers as _plain
from domain.events import EngineEvents
from domain.types import Bar, Order, OrderType, Side, SignalPoint
from engine.orders import OrderRejected, positive_qty
from engine.portfolio import Portfolio

# SignalPoint from a plain tuple via tuple.__new__ (a C call): one is made per bar.
_new_signal = functools.partial(tuple.__new__, SignalPoint)
EQUITY_FLOOR_REASON = "equity_floor"
_MARKET = OrderType.MARKET  # read once: attribute access on an Enum class costs ~100 ns per order


class StrategyContext:
    """The ``ctx`` order API of :class:`strategies.base.Context`, shared by both engines.

    Every method is called at the close of the current bar and returns the accepted
    :class:`Order` (or None on warm-up bars, where orders are discarded). Fill timing:
    an order decided at the close of bar t can fill from bar t+1 on.

    - ``target_percent(f)``: market order to hold ``f`` of equity (signed) after the next
      open, sized at that open: q = f × equity / (open' × (1 + taker fee)).
    - ``close()``: market order that flattens the position at the next open.
    - ``market(side, qty)``: market order for an absolute base quantity.
    - ``stop(side, price)`` / ``limit(side, price)``: without ``qty`` or ``target_fraction``
      a protective exit that closes whatever position is held when it fills. Placed at the
      same close as an entry, it is that entry's bracket: it lives until the entry is
      cancelled or expires, or until the position it opened is closed.
    - ``limit(side, price, target_fraction=f, expire_after_bars=N)``: a **passive entry**.
      It rests at ``price`` and fills only when a later bar trades through it (at the
      price, or at the open if the bar gaps through), sized at the fill like
      ``target_percent`` (with the maker fee when it rested); it expires after bar t+N.
      Stops are tried before limits within a bar. A limit that is marketable on its first
      bar fills at that open and pays the taker fee. ``stop(..., target_fraction=f)`` is the
      breakout counterpart (taker fee, slipped).
    - ``qty`` gives an absolute size instead; ``oco_group`` makes orders cancel each other.
    - Extra keywords (``signal``, ``threshold``, ``model_version``) are stored with the order.
    - Equity floor: once equity marked at a close is zero or below, the engine cancels what is
      pending, closes the position at the next open (reason ``equity_floor``) and stops
      calling the strategy.

    Subclasses set ``strategy``, ``events`` (the run's record), ``portfolio`` (the book of
    fills: trades and bars held) and ``_add_signal`` (where signals go), and implement
    ``_accept`` (where an order goes), ``cancel_all``, ``pending_orders`` and the account reads.
    """

    strategy: Any
    portfolio: Portfolio
    events: EngineEvents
    position_qty: float
    _add_signal: Callable[[SignalPoint], None]

    def __init__(self, config: Any, trade_from_ms: int | None, order_prefix: str) -> None:
        self.config = config
        self.trade_from_ms = trade_from_ms
        self.trading = trade_from_ms is None
        self.bar: Bar | None = None
        self.bar_index = -1
        self._last_ts = -(2**63)  # open time of the current bar (read per bar: a plain int is cheapest)
        self.equity_floor_ts: int | None = None
        self._order_prefix = order_prefix
        self._order_seq = 0
        self._placed_bar: dict[str, int] = {}  # client id → bar index of its decision (STOP/LIMIT only)
        self._entry_ts: int | None = None  # the last entry submitted, and at which close
        self._entry_id: str | None = None
        self._started = False
        self._stopped = False

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

    @property
    def bars_in_position(self) -> int | None:
        """Bars since the current position's first fill (0 on the fill bar), None when flat."""
        entry = self.portfolio.open_trade_entry_bar()
        return None if entry is None else self.bar_index - entry

    # ---- hooks for the engine ---------------------------------------------------------------
    def _accept(self, order: Order) -> None:
        raise NotImplementedError

    def cancel_all(self) -> None:
        raise NotImplementedError

    # ---- the strategy's order API -------------------------------------------------------------
    def target_percent(self, fraction: float, reason: str, **info: Any) -> Order | None:
        """Market order to hold ``fraction`` of equity (signed) after the next open."""
        if fraction < 0 and self.config.long_only:
            raise OrderRejected("short orders are not allowed with long_only")
        return self._submit(_MARKET, reason, target_fraction=float(fraction), **info)

    def close(self, reason: str, **info: Any) -> Order | None:
        """Market order that flattens the position at the next open."""
        return self._submit(_MARKET, reason, target_fraction=0.0, **info)

    def market(self, side: Side, qty: float, reason: str, **info: Any) -> Order | None:
        return self._submit(OrderType.MARKET, reason, side=side, qty=positive_qty(qty), **info)

    def stop(self, side: Side, price: float, reason: str, qty: float | None = None, oco_group: str | None = None,
             *, target_fraction: float | None = None, expire_after_bars: int | None = None,
             **info: Any) -> Order | None:
        """Stop order (fills at ``price``, or the open if gapped through, plus slippage); see the class doc."""
        return self._priced_order(OrderType.STOP, side, price, reason, qty, oco_group, target_fraction,
                            expire_after_bars, info)

    def limit(self, side: Side, price: float, reason: str, qty: float | None = None, oco_group: str | None = None,
              *, target_fraction: float | None = None, expire_after_bars: int | None = None,
              **info: Any) -> Order | None:
        """Limit order (fills at ``price``, or the open if gapped through, no slippage); see the class doc."""
        return self._priced_order(OrderType.LIMIT, side, price, reason, qty, oco_group, target_fraction,
                            expire_after_bars, info)

    def record_signal(self, signal: float, threshold: float | None = None, unusualness: float | None = None,
                      model_version: int | None = None) -> None:
        """Store what the strategy saw at this close (for reports and audits)."""
        if self.trading:
            self._add_signal(_new_signal((self._last_ts, signal, threshold, unusualness, model_version)))

    def record_signals(self, ts_ms: Sequence[int], signal: Sequence[float], threshold: float | None = None,
                       unusualness: float | None = None, model_version: int | None = None) -> None:
        """Signals of bars already seen, at once (a prepared strategy's record of passed bars):
        ``ts_ms`` and ``signal`` per bar, increasing times, the other fields shared by all of them.
        As with :meth:`record_signal`, bars before trading starts are not recorded."""
        ts_ms, signal = self._traded_part(ts_ms, signal)
        for ts, value in zip(_plain(ts_ms), _plain(signal)):
            self._add_signal(_new_signal((ts, value, threshold, unusualness, model_version)))

    def _traded_part(self, ts_ms: Sequence[int], signal: Sequence[float]) -> tuple[Sequence[int], Sequence[float]]:
        """The points at or after ``trade_from_ms`` (warm-up bars record nothing)."""
        start = self.trade_from_ms
        if start is None or not len(ts_ms) or ts_ms[0] >= start:
            return ts_ms, signal
        first = bisect_left(ts_ms, start)
        return ts_ms[first:], signal[first:]

    # ---- internals -------------------------------------------------------------------------------
    def _priced_order(self, type_: OrderType, side: Side, price: float, reason: str, qty: float | None,
                oco_group: str | None, target_fraction: float | None, expire_after_bars: int | None,
                info: dict) -> Order | None:
        if not (price > 0 and math.isfinite(price)):
            raise OrderRejected(f"{type_.value} price must be positive and finite, got {price!r}")
        if not isinstance(side, Side):
            raise OrderRejected(f"{type_.value} side must be a Side, got {side!r}")
        if expire_after_bars is not None and (isinstance(expire_after_bars, bool)
                                              or not isinstance(expire_after_bars, int) or expire_after_bars < 1):
            raise OrderRejected(f"expire_after_bars must be an integer >= 1, got {expire_after_bars!r}")
        if qty is not None and target_fraction is not None:
            raise OrderRejected("give either qty or target_fraction, not both")
        if target_fraction is not None:
            if not math.isfinite(target_fraction) or target_fraction == 0.0:
                raise OrderRejected(f"target_fraction must be finite and non-zero (omit it for a protective "
                                    f"exit), got {target_fraction!r}")
            if (target_fraction > 0) != (side is Side.BUY):
                raise OrderRejected(f"a {side.value} {type_.value} cannot target {target_fraction:+g} of equity")
            if target_fraction < 0 and self.config.long_only:
                raise OrderRejected("short orders are not allowed with long_only")
            size = {"target_fraction": float(target_fraction)}
        elif qty is None:
            size = {"target_fraction": 0.0}  # protective: closes the position held at the fill
        else:
            size = {"qty": positive_qty(qty)}
        return self._submit(type_, reason, side=side, price=float(price), oco_group=oco_group,
                            expire_after_bars=expire_after_bars, **size, **info)

    def _submit(self, type_: OrderType, reason: str, **fields: Any) -> Order | None:
        if not self.trading:
            return None
        bar = self.bar
        assert bar is not None
        self._order_seq += 1
        client_id = f"{self._order_prefix}{self._order_seq}"
        if fields.get("target_fraction") == 0.0:  # a close, or a protective exit
            if type_ is not _MARKET and self._entry_ts == bar.ts_ms:
                fields["parent_id"] = self._entry_id  # placed together with an entry: its bracket
        else:  # an entry (or an add): protective exits placed at this close belong to it
            self._entry_ts, self._entry_id = bar.ts_ms, client_id
        if type_ is not _MARKET:
            self._placed_bar[client_id] = self.bar_index
        order = Order(client_id, bar.ts_ms, type_, reason, **fields)
        self._accept(order)
        return order

    def _hit_equity_floor(self, ts_ms: int) -> None:
        """Equity marked at or below zero: stop trading, cancel what is pending, close out at the next open."""
        if self.equity_floor_ts is not None:
            return
        self.equity_floor_ts = self.events.equity_floor_ts = ts_ms
        self.cancel_all()
        if self.position_qty != 0.0:
            self._submit(OrderType.MARKET, EQUITY_FLOOR_REASON, target_fraction=0.0)
