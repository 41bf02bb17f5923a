"""Order sizing as one pure function, used by the simulated broker and the backtrader adapter.

DESIGN.md sizes target orders at the fill: to hold a fraction f of equity (signed)
at executed price p with fee rate r, the target position is

    q* = f × (cash + position × p) / (p × (1 + r))

so an all-in entry from flat (f = 1) spends exactly the cash, fee included. The
direction is read at the raw price, the size at the executed (slipped) price.
"""
from __future__ import annotations

from domain.types import Order, OrderType, Side
from engine.costs import SlippageModel

QTY_EPS = 1e-12  # a target within this fraction of the position (or of itself) is a no-op
# Enum members read once: attribute access on an Enum class costs ~100 ns, and this runs per fill.
_LIMIT, _BUY, _SELL = OrderType.LIMIT, Side.BUY, Side.SELL


def plan_fill(order: Order, position_qty: float, cash_quote: float, raw_price: float, fee_rate: float,
              slippage: SlippageModel | None, long_only: bool) -> tuple[Side, float, float] | None:
    """(side, qty, executed price) of ``order`` filling at ``raw_price``; None when there is nothing to do.

    - explicit size: ``order.side`` and ``order.qty`` as given;
    - ``target_fraction == 0``: close the whole position (None when flat);
    - other fractions: the delta to q* above; None when it is below ``QTY_EPS`` (relative:
      DESIGN.md sets no minimum size) or when slippage flipped its direction (never trade
      away from the target), or when a STOP/LIMIT target order would trade against its ``side``.
    Market and stop fills are slipped by ``slippage`` (None = no slippage); limit fills never are.
    Long-only caps a sell at the long position held, and refuses it when there is none.
    """
    pos = position_qty
    fraction = order.target_fraction
    slip = None if order.type is _LIMIT else slippage
    if fraction is None:
        side, qty = order.side, order.qty
        assert side is not None and qty is not None
        price = raw_price if slip is None else slip.adjust(raw_price, side)
    elif fraction == 0.0:
        if pos == 0.0:
            return None
        side, qty = (_SELL if pos > 0 else _BUY), abs(pos)
        price = raw_price if slip is None else slip.adjust(raw_price, side)
    else:
        raw_target = fraction * (cash_quote + pos * raw_price) / (raw_price * (1.0 + fee_rate))
        side = _BUY if raw_target > pos else _SELL
        if order.side is not None and side is not order.side:
            return None  # a priced target order trades only in its trigger's direction
        price = raw_price if slip is None else slip.adjust(raw_price, side)
        target = raw_target if price == raw_price else \
            fraction * (cash_quote + pos * price) / (price * (1.0 + fee_rate))
        delta = target - pos
        if abs(delta) <= QTY_EPS * max(abs(target), abs(pos)) or (delta > 0) != (side is _BUY):
            return None
        qty = abs(delta)
    if long_only and side is _SELL and qty > pos * (1.0 + QTY_EPS):
        if pos <= 0.0:
            return None
        qty = pos
    return side, qty, price
