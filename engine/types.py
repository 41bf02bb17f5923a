"""Domain objects shared by every layer. Plain, frozen, unit-suffixed, I/O-free.

Timing contract (DESIGN.md): ``Bar.ts_ms`` is the candle's *open* time in ms UTC;
a bar is known only once it has closed, at ``ts_ms + timeframe``.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple


class Bar(NamedTuple):
    """One OHLCV candle. Prices in quote currency, volume in base currency.

    A NamedTuple rather than a dataclass: one is made per bar, and tuples of plain
    numbers are cheaper to create and drop out of the garbage collector's tracking.
    """

    ts_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float


class Side(str, Enum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1


class OrderType(str, Enum):
    MARKET = "market"
    STOP = "stop"
    LIMIT = "limit"


class Order(NamedTuple):  # NamedTuple: made in the hot loop, far cheaper than a frozen dataclass
    """An instruction decided at the close of bar ``created_ts_ms``; it can fill from the next bar on.

    Size is either an absolute base quantity (``qty`` with ``side``) or a signed
    ``target_fraction`` of equity resolved at fill time (1.0 = all-in long,
    -1.0 = all-in short, 0.0 = flat), so "all cash at the next open" is exact.
    ``price`` is the trigger for STOP orders and the limit for LIMIT orders.
    Orders in the same ``oco_group`` cancel each other when one fills.
    """

    client_id: str
    created_ts_ms: int
    type: OrderType
    reason: str
    side: Side | None = None
    qty: float | None = None
    target_fraction: float | None = None
    price: float | None = None
    oco_group: str | None = None
    signal: float | None = None
    threshold: float | None = None
    model_version: int | None = None


class Fill(NamedTuple):
    """An executed (simulated) fill. ``qty`` is positive; ``side`` gives the direction."""

    order_id: str
    ts_ms: int
    side: Side
    qty: float
    price: float
    fee_quote: float
    reason: str

    @property
    def signed_qty(self) -> float:
        return self.qty if self.side is Side.BUY else -self.qty

    @property
    def notional_quote(self) -> float:
        return self.qty * self.price


class Trade(NamedTuple):
    """A closed round trip: position opened from flat, closed back to flat (or flipped).

    ``qty`` is the largest absolute position held; prices are quantity-weighted
    averages; ``pnl_quote`` is net of ``fees_quote`` (entry and exit fees).
    """

    side: str  # "long" | "short"
    qty: float
    entry_ts_ms: int
    exit_ts_ms: int
    entry_price: float
    exit_price: float
    gross_pnl_quote: float
    fees_quote: float
    pnl_quote: float
    return_pct: float
    exit_reason: str
    bars_held: int


@dataclass(frozen=True, slots=True)
class EquityPoint:
    """Account state marked at a bar's close (after that bar's fills)."""

    ts_ms: int
    cash_quote: float
    position_qty: float
    close: float
    equity_quote: float


class SignalPoint(NamedTuple):
    """What a strategy saw at a bar's close: its signal, threshold and an unusualness measure.

    A NamedTuple for the same per-bar cost reason as :class:`Bar`.
    """

    ts_ms: int
    signal: float
    threshold: float | None = None
    unusualness: float | None = None
    model_version: int | None = None
