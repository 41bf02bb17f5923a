"""Domain objects shared by every layer. Plain, frozen, unit-suffixed, I/O-free.

This is the ground layer: it imports nothing of the project, so feeds, models,
store, engine and strategies can all depend on it without depending on each other.

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


class Liquidity(str, Enum):
    """Whether a fill took liquidity (taker fee) or rested in the book (maker fee)."""

    TAKER = "taker"
    MAKER = "maker"


# Order statuses, as stored (plain strings: they go to the DB and to JSON as they are).
SUBMITTED = "submitted"  # accepted, waiting to fill
FILLED = "filled"
CANCELLED = "cancelled"  # by the strategy, an OCO sibling, a closed position or a cancelled entry
EXPIRED = "expired"  # ``expire_after_bars`` passed without a fill
REJECTED = "rejected"  # refused by the venue (backtrader only: margin)
FINAL_STATUSES = frozenset({FILLED, CANCELLED, EXPIRED, REJECTED})  # an order in one of them never changes again


class Order(NamedTuple):  # NamedTuple: made in the hot loop, far cheaper than a frozen dataclass
    """An instruction decided at the close of bar ``created_ts_ms``; it can fill from the next bar on.

    Size is either an absolute base quantity (``qty`` with ``side``) or a signed
    ``target_fraction`` of equity resolved at fill time (1.0 = all-in long,
    -1.0 = all-in short, 0.0 = flat), so "all cash at the next open" is exact.
    ``price`` is the trigger for STOP orders and the limit for LIMIT orders.
    Orders in the same ``oco_group`` cancel each other when one fills.
    ``parent_id`` links a protective exit to the entry it was placed with (bracket):
    it lives until that entry is cancelled or expires, or until its position closes.
    ``expire_after_bars``: a STOP/LIMIT order decided at close t may fill on bars
    t+1 … t+N and expires after bar t+N; None = good till cancelled.
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
    parent_id: str | None = None
    expire_after_bars: int | None = None


class Fill(NamedTuple):
    """An executed (simulated) fill. ``qty`` is positive; ``side`` gives the direction.

    ``liquidity`` says which fee applied: TAKER for market and stop fills and for a
    limit that was marketable when it arrived, MAKER for a limit that rested first.
    """

    order_id: str
    ts_ms: int
    side: Side
    qty: float
    price: float
    fee_quote: float
    reason: str
    liquidity: Liquidity = Liquidity.TAKER

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
