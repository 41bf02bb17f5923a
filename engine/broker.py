"""Simulated broker: turns pending orders into fills on the next bar's prices.

Fill timing (DESIGN.md), identical in backtest and paper mode:
- orders decided at the close of bar t are eligible from bar t+1 on;
- MARKET fills at the open of bar t+1, moved by slippage (buy higher, sell lower);
- STOP and LIMIT fill inside a later bar's range at the order price, or at the open
  when the bar gaps through it; they stay pending until filled, cancelled or expired
  (``expire_after_bars``); a stop fill is slipped, a limit fill is not;
- within one bar: market orders first, then stops, then limits (see engine/orders.py);
- fees come from the injected fee model: market and stop fills and marketable limits
  pay the taker fee, resting limits the maker fee (``fill_liquidity``);
- after the fills, :func:`engine.orders.settle` applies OCO, expiry and bracket rules.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from domain.types import CANCELLED, FILLED, SUBMITTED, Bar, Fill, Liquidity, Order, OrderType, Side, Trade
from engine.costs import BpsSlippage, FeeModel, MakerTakerFee, SlippageModel
from engine.orders import OrderRejected, fill_liquidity, fill_price_at, priority, settle
from engine.portfolio import Portfolio
from engine.sizing import plan_fill

__all__ = ["BrokerConfig", "OrderRejected", "SimulatedBroker"]
# Enum members read once: attribute access on an Enum class costs ~100 ns, and these run per order.
_MARKET, _TAKER = OrderType.MARKET, Liquidity.TAKER
_new_fill = functools.partial(tuple.__new__, Fill)  # a Fill from a tuple of all its fields (a C call)


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Costs and limits of the simulated account."""

    cash_quote: float = 100_000.0  # starting cash
    fee_bps: float = 10.0  # taker fee per fill, of notional (0.1 %)
    slippage_bps: float = 0.0  # adverse move applied to market and stop fills
    long_only: bool = False  # reject orders that would open or grow a short
    maker_fee_bps: float | None = None  # fee of resting limit fills; None = the same as fee_bps

    def fee_model(self) -> MakerTakerFee:
        """The fee schedule these settings describe (the broker's default fee model)."""
        maker = self.fee_bps if self.maker_fee_bps is None else self.maker_fee_bps
        return MakerTakerFee(taker_bps=self.fee_bps, maker_bps=maker)

    def slippage_model(self) -> BpsSlippage:
        return BpsSlippage(self.slippage_bps)


class SimulatedBroker:
    """Holds pending orders and fills them against each new bar.

    ``fee_model`` and ``slippage_model`` default to the ones ``config`` describes; pass
    your own (anything with the same methods, see engine/costs.py) to change costs.
    ``placed_bar`` maps a STOP/LIMIT order's client id to the bar index of its decision
    (for expiry and maker/taker); the engine shares its own map. ``order_log`` receives
    every submitted order, in order (the engine passes its run record's list).
    """

    def __init__(self, config: BrokerConfig, portfolio: Portfolio, *, fee_model: FeeModel | None = None,
                 slippage_model: SlippageModel | None = None, placed_bar: dict[str, int] | None = None,
                 order_log: list[Order] | None = None) -> None:
        self.config = config
        self.portfolio = portfolio
        self.fee_model = config.fee_model() if fee_model is None else fee_model
        self.slippage_model = config.slippage_model() if slippage_model is None else slippage_model
        no_slip = isinstance(self.slippage_model, BpsSlippage) and self.slippage_model.slippage_bps == 0.0
        self._slippage = None if no_slip else self.slippage_model
        self.placed_bar = {} if placed_bar is None else placed_bar
        # Fee rates by liquidity, read once (a fee model's rate is a constant of the schedule).
        self._rates = {liquidity: self.fee_model.rate(liquidity) for liquidity in Liquidity}
        self.pending: list[Order] = []
        self.status: dict[str, str] = {}
        self._log_order = (order_log if order_log is not None else []).append
        self.changes: dict[str, str] | None = None  # when a dict, every status change is also noted here

    def _set_status(self, client_id: str, status: str) -> None:
        self.status[client_id] = status
        if self.changes is not None:
            self.changes[client_id] = status

    def submit(self, order: Order) -> None:
        self.pending.append(order)
        self._log_order(order)
        self.status[order.client_id] = SUBMITTED  # _set_status, inlined: once per order
        if self.changes is not None:
            self.changes[order.client_id] = SUBMITTED

    def cancel(self, client_id: str) -> None:
        before = len(self.pending)
        self.pending = [o for o in self.pending if o.client_id != client_id]
        if len(self.pending) != before:
            self._set_status(client_id, CANCELLED)

    def cancel_all(self) -> None:
        for order in self.pending:
            self._set_status(order.client_id, CANCELLED)
        self.pending = []

    def process(self, bar: Bar, bar_index: int) -> tuple[list[Fill], list[Trade]]:
        """Fill what bar ``bar`` triggers; return the fills and any trades they closed."""
        pending = self.pending
        if len(pending) == 1 and pending[0].type is _MARKET:  # the common case, kept cheap
            order = pending[0]
            self.pending = []
            fill = self._make_fill(order, bar, bar.open, bar_index)
            status = CANCELLED if fill is None else FILLED
            self.status[order.client_id] = status  # _set_status, inlined
            if self.changes is not None:
                self.changes[order.client_id] = status
            if fill is None:
                return [], []
            trade = self.portfolio.apply(fill, bar_index)
            return [fill], ([] if trade is None else [trade])
        fills: list[Fill] = []
        trades: list[Trade] = []
        self.pending = []
        filled_groups: set[str] = set()
        live: list[Order] = []
        for order in sorted(pending, key=priority):
            if order.oco_group is not None and order.oco_group in filled_groups:
                self._set_status(order.client_id, CANCELLED)
                continue
            price = _trigger_price(order, bar)
            fill = None if price is None else self._make_fill(order, bar, price, bar_index)
            if fill is None:
                if order.type is OrderType.MARKET:
                    self._set_status(order.client_id, CANCELLED)
                else:
                    live.append(order)
                continue
            self._set_status(order.client_id, FILLED)
            fills.append(fill)
            trade = self.portfolio.apply(fill, bar_index)
            if trade is not None:
                trades.append(trade)
            if order.oco_group is not None:
                filled_groups.add(order.oco_group)
        if live:
            live, ended = settle(live, flat=self.portfolio.position_qty == 0.0, filled_groups=filled_groups,
                                 status=self.status, bar_index=bar_index, placed_bar=self.placed_bar)
            for client_id, status in ended.items():
                self._set_status(client_id, status)
        self.pending = live
        return fills, trades

    def _make_fill(self, order: Order, bar: Bar, raw_price: float, bar_index: int) -> Fill | None:
        """Size, price and charge the fill; None when there is nothing to do (e.g. already flat)."""
        if order.type is _MARKET:
            liquidity = _TAKER
        else:
            liquidity = fill_liquidity(order, bar.open, bar_index == self.placed_bar[order.client_id] + 1)
        pf = self.portfolio
        plan = plan_fill(order, pf.position_qty, pf.cash_quote, raw_price, self._rates[liquidity], self._slippage,
                         self.config.long_only)
        if plan is None:
            return None
        side, qty, price = plan
        return _new_fill((order.client_id, bar.ts_ms, side, qty, price, self.fee_model.fee(qty, price, liquidity),
                          order.reason, liquidity))


def _trigger_price(order: Order, bar: Bar) -> float | None:
    """Raw execution price if ``bar`` triggers ``order``, else None."""
    if order.type is OrderType.MARKET:
        return bar.open
    p = order.price
    assert p is not None and order.side is not None
    if (order.side is Side.BUY) == (order.type is OrderType.STOP):  # buy stop, sell limit: trades up to p
        reached = bar.high >= p
    else:  # sell stop, buy limit: trades down to p
        reached = bar.low <= p
    return fill_price_at(order, bar.open) if reached else None
