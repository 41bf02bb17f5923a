"""Simulated broker: turns pending orders into fills on the next bar's prices.

Fill timing (DESIGN.md), identical in backtest and paper mode:
- orders decided at the close of bar t are eligible from bar t+1 on;
- MARKET fills at the open of bar t+1, moved by slippage (buy higher, sell lower);
- STOP and LIMIT fill inside bar t+1's range at the order price, or at the open
  when the bar gaps through it; they stay pending (good-till-cancelled);
- within one bar: market orders first, then stops, then limits — so when a
  stop and a target are both inside one bar's range the stop is assumed hit
  first (the pessimistic reading of an OHLC bar);
- a fee of ``fee_bps`` of notional is charged on every fill.
"""
from __future__ import annotations

from dataclasses import dataclass

from engine.costs import BpsFee, BpsSlippage
from engine.portfolio import Portfolio
from engine.types import Bar, Fill, Order, OrderType, Side, Trade

_QTY_EPS = 1e-12


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Costs and limits of the simulated account."""

    cash_quote: float = 100_000.0  # starting cash
    fee_bps: float = 10.0  # per fill, of notional (0.1 % taker)
    slippage_bps: float = 0.0  # adverse move applied to market and stop fills
    long_only: bool = False  # reject orders that would open or grow a short


class OrderRejected(ValueError):
    """An order that the account cannot accept (e.g. a short when long-only)."""


class SimulatedBroker:
    """Holds pending orders and fills them against each new bar."""

    def __init__(self, config: BrokerConfig, portfolio: Portfolio) -> None:
        self.config = config
        self.portfolio = portfolio
        self.fee_model = BpsFee(config.fee_bps)
        self.slippage_model = BpsSlippage(config.slippage_bps)
        self._no_slippage = config.slippage_bps == 0.0
        self.pending: list[Order] = []
        self.status: dict[str, str] = {}

    def submit(self, order: Order) -> None:
        self.pending.append(order)
        self.status[order.client_id] = "submitted"

    def cancel(self, client_id: str) -> None:
        before = len(self.pending)
        self.pending = [o for o in self.pending if o.client_id != client_id]
        if len(self.pending) != before:
            self.status[client_id] = "cancelled"

    def cancel_all(self) -> None:
        for order in self.pending:
            self.status[order.client_id] = "cancelled"
        self.pending = []

    def process(self, bar: Bar, bar_index: int) -> tuple[list[Fill], list[Trade]]:
        """Fill what bar ``bar`` triggers; return the fills and any trades they closed."""
        pending = self.pending
        if len(pending) == 1 and pending[0].type is OrderType.MARKET:  # the common case, kept cheap
            order = pending[0]
            self.pending = []
            fill = self._make_fill(order, bar, bar.open)
            if fill is None:
                self.status[order.client_id] = "cancelled"
                return [], []
            self.status[order.client_id] = "filled"
            trade = self.portfolio.apply(fill, bar_index)
            return [fill], ([] if trade is None else [trade])
        fills: list[Fill] = []
        trades: list[Trade] = []
        ordered = sorted(pending, key=_priority)
        self.pending = []
        cancelled_groups: set[str] = set()
        still_pending: list[Order] = []
        for order in ordered:
            if order.oco_group is not None and order.oco_group in cancelled_groups:
                self.status[order.client_id] = "cancelled"
                continue
            price = self._trigger_price(order, bar)
            if price is None:
                still_pending.append(order)
                continue
            fill = self._make_fill(order, bar, price)
            if fill is None:
                if order.type is OrderType.MARKET:
                    self.status[order.client_id] = "cancelled"
                else:
                    still_pending.append(order)
                continue
            self.status[order.client_id] = "filled"
            fills.append(fill)
            trade = self.portfolio.apply(fill, bar_index)
            if trade is not None:
                trades.append(trade)
            if order.oco_group is not None:
                cancelled_groups.add(order.oco_group)
        if self.portfolio.position_qty == 0.0:
            # Protective exits die with their position.
            kept = []
            for order in still_pending:
                if order.target_fraction == 0.0:
                    self.status[order.client_id] = "cancelled"
                else:
                    kept.append(order)
            still_pending = kept
        for order in still_pending:
            if order.oco_group is not None and order.oco_group in cancelled_groups:
                self.status[order.client_id] = "cancelled"
            else:
                self.pending.append(order)
        return fills, trades

    @staticmethod
    def _trigger_price(order: Order, bar: Bar) -> float | None:
        """Raw execution price if ``bar`` triggers ``order``, else None."""
        if order.type is OrderType.MARKET:
            return bar.open
        buying = _is_buy(order)
        if buying is None:
            return None
        p = order.price
        assert p is not None
        if order.type is OrderType.STOP:
            if buying and bar.high >= p:
                return max(bar.open, p)
            if not buying and bar.low <= p:
                return min(bar.open, p)
            return None
        if buying and bar.low <= p:
            return min(bar.open, p)
        if not buying and bar.high >= p:
            return max(bar.open, p)
        return None

    def _make_fill(self, order: Order, bar: Bar, raw_price: float) -> Fill | None:
        """Size and price the fill; None when there is nothing to do (e.g. already flat)."""
        pos = self.portfolio.position_qty
        fraction = order.target_fraction
        if fraction is None:
            assert order.side is not None and order.qty is not None
            side, qty = order.side, order.qty
            price = self._exec_price(order, raw_price, side)
        elif fraction == 0.0:
            if pos == 0.0:
                return None
            side, qty = (Side.SELL if pos > 0 else Side.BUY), abs(pos)
            price = self._exec_price(order, raw_price, side)
        else:
            # Direction from the raw price, then size at the executed price:
            # target = f × equity / (price × (1 + fee)), so an all-in entry
            # from flat spends exactly the cash, fee included.
            raw_target = self._target_qty(fraction, raw_price)
            side = Side.BUY if raw_target > pos else Side.SELL
            price = self._exec_price(order, raw_price, side)
            target = raw_target if price == raw_price else self._target_qty(fraction, price)
            delta = target - pos
            # Relative test only: an account worth 1e-8 still trades (no minimum size in DESIGN.md).
            if abs(delta) <= _QTY_EPS * max(abs(target), abs(pos)) or (delta > 0) != (side is Side.BUY):
                return None  # nothing to do, or slippage flipped the direction: never trade away from target
            qty = abs(delta)
        if self.config.long_only and side is Side.SELL and qty > pos * (1.0 + _QTY_EPS):
            if pos <= 0.0:
                return None
            qty = pos
        return Fill(order.client_id, bar.ts_ms, side, qty, price, self.fee_model.fee(qty, price), order.reason)

    def _target_qty(self, fraction: float, price: float) -> float:
        equity = self.portfolio.cash_quote + self.portfolio.position_qty * price
        return fraction * equity / (price * (1.0 + self.fee_model.rate))

    def _exec_price(self, order: Order, raw_price: float, side: Side) -> float:
        if self._no_slippage or order.type is OrderType.LIMIT:
            return raw_price
        return self.slippage_model.adjust(raw_price, side)


_PRIORITY = {OrderType.MARKET: 0, OrderType.STOP: 1, OrderType.LIMIT: 2}


def _priority(order: Order) -> int:
    return _PRIORITY[order.type]


def _is_buy(order: Order) -> bool | None:
    """Direction of a stop/limit order; None when it cannot be known yet."""
    if order.side is not None:
        return order.side is Side.BUY
    return None
