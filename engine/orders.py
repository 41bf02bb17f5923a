"""Order rules written once for both engines: the native loop and the backtrader adapter.

- :class:`engine.context.StrategyContext` is the strategy's order API (the ``ctx``
  methods): submission, price and size checks, long-only, bracket links, expiry, and
  the equity floor; it raises :class:`OrderRejected`.
- :func:`settle` is the close-of-bar housekeeping of live STOP/LIMIT orders.
- :func:`fill_liquidity` says whether a fill pays the maker or the taker fee.
- :func:`priority` is the order in which one bar's orders are tried.
Sizing at the fill is :func:`engine.sizing.plan_fill`.
"""
from __future__ import annotations

from typing import Collection, Mapping, Sequence

from domain.types import CANCELLED, EXPIRED, REJECTED, SUBMITTED, Liquidity, Order, OrderType, Side

# Within one bar: market orders first, then stops, then limits — so when a stop and a
# target are both inside one bar's range the stop is assumed hit first (the pessimistic
# reading of an OHLC bar).
_PRIORITY = {OrderType.MARKET: 0, OrderType.STOP: 1, OrderType.LIMIT: 2}


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
