"""Fee and slippage models: small classes with one job each, injected into the broker,
so a user can swap in their own (anything with the same methods)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from domain.types import Liquidity, Side

_MAKER = Liquidity.MAKER  # enum members read once: attribute access on an Enum class is slow in the hot path


class FeeModel(Protocol):
    """Fee of a fill in quote currency, by whether it took or made liquidity."""

    def rate(self, liquidity: Liquidity) -> float:
        """Fee as a fraction of notional (used to size all-in orders so the fee fits)."""
        ...

    def fee(self, qty: float, price: float, liquidity: Liquidity) -> float: ...


class SlippageModel(Protocol):
    def adjust(self, price: float, side: Side) -> float:
        """The executed price of a market or stop fill at raw ``price``."""
        ...


@dataclass(frozen=True, slots=True)
class MakerTakerFee:
    """A fee schedule in basis points of fill notional, paid in quote currency.

    Market and stop fills, and limits that were marketable when they arrived, pay
    ``taker_bps``; limits that rested in the book first pay ``maker_bps``.
    """

    taker_bps: float = 10.0
    maker_bps: float = 10.0

    def rate(self, liquidity: Liquidity) -> float:
        return (self.maker_bps if liquidity is _MAKER else self.taker_bps) / 10_000.0

    def fee(self, qty: float, price: float, liquidity: Liquidity) -> float:
        bps = self.maker_bps if liquidity is _MAKER else self.taker_bps
        return qty * price * bps / 10_000.0


def BpsFee(fee_bps: float = 10.0) -> MakerTakerFee:  # noqa: N802 - kept as the flat-fee constructor
    """One fee for every fill: ``fee_bps`` of notional, maker or taker alike."""
    return MakerTakerFee(fee_bps, fee_bps)


@dataclass(frozen=True, slots=True)
class BpsSlippage:
    """Adverse price move of ``slippage_bps``: buys fill higher, sells lower."""

    slippage_bps: float = 0.0

    def adjust(self, price: float, side: Side) -> float:
        if self.slippage_bps == 0.0:
            return price
        move = self.slippage_bps / 10_000.0
        return price * (1.0 + move) if side is Side.BUY else price * (1.0 - move)
