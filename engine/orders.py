"""Order rules written once for both engines: the native loop and the backtrader adapter.

- :class:`OrderIntake` is the strategy's order API (the ``ctx`` methods): submission,
  price and size checks, long-only, bracket links, expiry, and the equity floor.
- :func:`settle` is the close-of-bar housekeeping of live STOP/LIMIT orders.
- :func:`fill_liquidity` says whether a fill pays the maker or the taker fee.
- :func:`priority` is the order in which one bar's orders are tried.
Sizing at the fill is :func:`engine.sizing.plan_fill`.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Collection, Mapping, Sequence

from domain.types import (CANCELLED, EXPIRED, REJECTED, SUBMITTED, Bar, Liquidity, Order, OrderType, Side,
                          SignalPoint)

# SignalPoint from a plain tuple via tuple.__new__ (a C call): one is made per bar.
_new_signal = functools.partial(tuple.__new__, SignalPoint)

# Within one bar: market orders first, then stops, then limits — so when a stop and a
# target are both inside one bar's range the stop is assumed hit first (the pessimistic
# reading of an OHLC bar).
_PRIORITY = {OrderType.MARKET: 0, OrderType.STOP: 1, OrderType.LIMIT: 2}
EQUITY_FLOOR_REASON = "equity_floor"


class OrderRejected(ValueError):
    """An order that the account cannot accept (e.g. a short when long-only)."""


def priority(order: Order) -> int:
    return _PRIORITY[order.type]


def positive_qty(qty: float) -> float:
    if not qty > 0:
        raise OrderRejected(f"order quantity must be positive, got {qty!r}")
    return float(qty)


def limit_is_marketable(order: Order, bar_open: float) -> bool:
    """Would this limit trade at once at ``bar_open`` (a buy at or above the open, a sell at or below)?"""
    assert order.price is not None
    return bar_open <= order.price if order.side is Side.BUY else bar_open >= order.price


def fill_price_at(order: Order, bar_open: float) -> float:
    """The raw price a STOP/LIMIT order fills at on a bar that opens at ``bar_open`` and reaches its
    price: the order price, or the open when the bar gaps through it (a better price for a limit,
    a worse one for a stop)."""
    p = order.price
    assert p is not None
    if (order.side is Side.BUY) == (order.type is OrderType.STOP):  # buy stop, sell limit
        return max(bar_open, p)
    return min(bar_open, p)  # sell stop, buy limit


def fill_liquidity(order: Order, bar_open: float, first_bar: bool) -> Liquidity:
    """Which fee a fill of ``order`` on a bar opening at ``bar_open`` pays.

    Market and stop fills take liquidity. A limit takes it only when it was marketable
    on arrival, i.e. on its first eligible bar (``first_bar``) the open was already
    through its price; otherwise it rested in the book and pays the maker fee (also
    when a later bar gaps through it: the order was resting then).
    """
    if order.type is OrderType.LIMIT and not (first_bar and limit_is_marketable(order, bar_open)):
        return Liquidity.MAKER
    return Liquidity.TAKER


def settle(pending: Sequence[Order], *, flat: bool, filled_groups: Collection[str], status: Mapping[str, str],
           bar_index: int, placed_bar: Mapping[str, int]) -> tuple[list[Order], dict[str, str]]:
    """Close-of-bar rules for live STOP/LIMIT orders, after bar ``bar_index``'s fills.

    Returns the orders that stay live (good till cancelled) and ``{client_id: status}``
    for the ones that end here:
    - an OCO sibling of an order that filled is cancelled;
    - an order past ``expire_after_bars`` (placed at close t, tried on bars t+1 … t+N) expires;
    - a protective exit placed with an entry (``parent_id``) lives while that entry is
      still working, is cancelled when the entry is cancelled, expires or is rejected,
      and once the entry has filled it lives until the position is closed (bracket
      semantics); a protective exit without an entry is cancelled once the book is flat.
    """
    ended: dict[str, str] = {}
    for order in pending:
        if order.oco_group is not None and order.oco_group in filled_groups:
            ended[order.client_id] = CANCELLED
        elif order.expire_after_bars is not None and \
                bar_index - placed_bar[order.client_id] >= order.expire_after_bars:
            ended[order.client_id] = EXPIRED
    for order in pending:
        if order.client_id in ended or order.target_fraction != 0.0:
            continue
        parent = order.parent_id
        parent_status = None if parent is None else ended.get(parent, status.get(parent))
        if parent_status == SUBMITTED:
            continue  # its entry is still working
        if flat or parent_status in (CANCELLED, EXPIRED, REJECTED):
            ended[order.client_id] = CANCELLED
    if not ended:
        return list(pending), ended
    return [o for o in pending if o.client_id not in ended], ended


class OrderIntake:
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
      bar fills at that open and pays the taker fee.
    - ``qty`` gives an absolute size instead; ``oco_group`` makes orders cancel each other.
    - Extra keywords (``signal``, ``threshold``, ``model_version``) are stored with the order.

    Subclasses set ``strategy``, ``_add_signal`` (where signals go) and implement
    ``_accept`` (where an order goes), ``cancel_all`` and ``position_qty``.
    """

    strategy: Any
    position_qty: float
    _add_signal: Callable[[SignalPoint], None]

    def __init__(self, config: Any, trade_from_ms: int | None, order_prefix: str) -> None:
        self.config = config
        self.trade_from_ms = trade_from_ms
        self.trading = trade_from_ms is None
        self.bar: Bar | None = None
        self.bar_index = -1
        self.equity_floor_ts: int | None = None
        self._order_prefix = order_prefix
        self._order_seq = 0
        self._placed_bar: dict[str, int] = {}  # client id → bar index of its decision (STOP/LIMIT only)
        self._entry_ts: int | None = None  # the last entry submitted, and at which close
        self._entry_id: str | None = None

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
        return self._submit(OrderType.MARKET, reason, target_fraction=float(fraction), **info)

    def close(self, reason: str, **info: Any) -> Order | None:
        """Market order that flattens the position at the next open."""
        return self._submit(OrderType.MARKET, reason, target_fraction=0.0, **info)

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
            self._add_signal(_new_signal((self.bar.ts_ms, signal, threshold, unusualness, model_version)))

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
        protective = fields.get("target_fraction") == 0.0
        if protective and type_ is not OrderType.MARKET and self._entry_ts == bar.ts_ms:
            fields["parent_id"] = self._entry_id  # placed together with an entry: its bracket
        self._order_seq += 1
        order = Order(client_id=f"{self._order_prefix}{self._order_seq}", created_ts_ms=bar.ts_ms, type=type_,
                      reason=reason, **fields)
        if not protective:
            self._entry_ts, self._entry_id = bar.ts_ms, order.client_id
        if type_ is not OrderType.MARKET:
            self._placed_bar[order.client_id] = self.bar_index
        self._accept(order)
        return order

    def _hit_equity_floor(self, ts_ms: int) -> None:
        """Equity marked at or below zero: stop trading, cancel what is pending, close out at the next open."""
        if self.equity_floor_ts is not None:
            return
        self.equity_floor_ts = ts_ms
        self.cancel_all()
        if self.position_qty != 0.0:
            self._submit(OrderType.MARKET, EQUITY_FLOOR_REASON, target_fraction=0.0)
