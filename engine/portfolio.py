"""Account state in quote currency. It changes only by applying fills (STYLE.md §3).

So a restart can rebuild it by replaying stored fills, and a test can check that
replay reproduces the same cash, position and trades.
"""
from __future__ import annotations

import functools

from domain.types import Fill, Side, Trade

_BUY = Side.BUY  # read once: attribute access on an Enum class costs ~100 ns per fill
_new_trade = functools.partial(tuple.__new__, Trade)  # a Trade from a tuple of all its fields, in order (a C call)


class Portfolio:
    """Signed position, cash, average entry, realised P&L and round-trip trades.

    Equity = cash + position_qty × price. Shorts are perpetual-like: selling
    credits cash, buying back debits it; no funding, no borrow fee.
    """

    __slots__ = (
        "cash_quote", "position_qty", "avg_entry_price", "realised_pnl_quote", "fees_paid_quote",
        "turnover_quote", "trades", "_open_ts_ms", "_open_bar", "_open_fees", "_open_peak_qty",
        "_exit_notional", "_exit_qty", "_entry_notional", "_entry_qty", "_realised_in_trade",
    )

    def __init__(self, cash_quote: float) -> None:
        self.cash_quote = float(cash_quote)
        self.position_qty = 0.0
        self.avg_entry_price = 0.0
        self.realised_pnl_quote = 0.0
        self.fees_paid_quote = 0.0
        self.turnover_quote = 0.0
        self.trades: list[Trade] = []
        self._reset_trade()

    def _reset_trade(self) -> None:
        self._open_ts_ms = 0
        self._open_bar = 0
        self._open_fees = 0.0
        self._open_peak_qty = 0.0
        self._exit_notional = 0.0
        self._exit_qty = 0.0
        self._entry_notional = 0.0
        self._entry_qty = 0.0
        self._realised_in_trade = 0.0

    def equity(self, price: float) -> float:
        return self.cash_quote + self.position_qty * price

    def apply(self, fill: Fill, bar_index: int = 0) -> Trade | None:
        """Apply one fill; return the trade it closed, if any.

        A fill that crosses zero (a flip) is split: the closing part ends the
        current trade, the rest opens a new one; the fee is split pro rata.
        """
        signed = fill.qty if fill.side is _BUY else -fill.qty
        self.cash_quote -= signed * fill.price + fill.fee_quote
        self.fees_paid_quote += fill.fee_quote
        self.turnover_quote += fill.qty * fill.price
        pos = self.position_qty
        closed: Trade | None = None
        if pos == 0.0 or (pos > 0) == (signed > 0):
            self._open_or_add(fill, signed, fill.fee_quote, bar_index)
            return None
        closing_qty = min(abs(signed), abs(pos))
        closing_fee = fill.fee_quote * closing_qty / fill.qty
        direction = 1.0 if pos > 0 else -1.0
        pnl = direction * closing_qty * (fill.price - self.avg_entry_price)
        self.realised_pnl_quote += pnl
        self._realised_in_trade += pnl
        self._open_fees += closing_fee
        self._exit_notional += closing_qty * fill.price
        self._exit_qty += closing_qty
        new_pos = pos + signed
        if abs(new_pos) <= 1e-12 * max(1.0, abs(pos)):
            new_pos = 0.0
        if new_pos == 0.0 or (new_pos > 0) != (pos > 0):
            closed = self._close_trade(fill, bar_index)
            self.position_qty = 0.0
            self.avg_entry_price = 0.0
            if new_pos != 0.0:
                rest = abs(new_pos)
                self._open_or_add(fill, new_pos, fill.fee_quote - closing_fee, bar_index, qty=rest)
        else:
            self.position_qty = new_pos
        return closed

    def _open_or_add(self, fill: Fill, signed: float, fee: float, bar_index: int, qty: float | None = None) -> None:
        qty = fill.qty if qty is None else qty
        if self.position_qty == 0.0:
            self._reset_trade()
            self._open_ts_ms = fill.ts_ms
            self._open_bar = bar_index
        new_pos = self.position_qty + (qty if signed > 0 else -qty)
        self.avg_entry_price = (abs(self.position_qty) * self.avg_entry_price + qty * fill.price) / abs(new_pos)
        self.position_qty = new_pos
        self._open_fees += fee
        self._entry_notional += qty * fill.price
        self._entry_qty += qty
        self._open_peak_qty = max(self._open_peak_qty, abs(new_pos))

    def _close_trade(self, fill: Fill, bar_index: int) -> Trade:
        side = "long" if self.position_qty > 0 else "short"
        entry_price = self._entry_notional / self._entry_qty
        exit_price = self._exit_notional / self._exit_qty
        gross = self._realised_in_trade
        net = gross - self._open_fees
        # side, qty, entry_ts_ms, exit_ts_ms, entry_price, exit_price, gross_pnl_quote, fees_quote,
        # pnl_quote, return_pct, exit_reason, bars_held
        trade = _new_trade((side, self._open_peak_qty, self._open_ts_ms, fill.ts_ms, entry_price, exit_price, gross,
                            self._open_fees, net, 100.0 * net / self._entry_notional, fill.reason,
                            bar_index - self._open_bar))
        self.trades.append(trade)  # the trade accumulators are reset when the next one opens
        return trade

    def open_trade_entry_bar(self) -> int | None:
        return self._open_bar if self.position_qty != 0.0 else None
