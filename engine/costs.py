"""Fee and slippage models: one method each, so a user can swap in their own."""
from __future__ import annotations

from dataclasses import dataclass

from engine.types import Side


@dataclass(frozen=True, slots=True)
class BpsFee:
    """Fee of ``fee_bps`` basis points of fill notional, paid in quote currency."""

    fee_bps: float = 10.0

    @property
    def rate(self) -> float:
        return self.fee_bps / 10_000.0

    def fee(self, qty: float, price: float) -> float:
        return qty * price * self.fee_bps / 10_000.0


@dataclass(frozen=True, slots=True)
class BpsSlippage:
    """Adverse price move of ``slippage_bps``: buys fill higher, sells lower."""

    slippage_bps: float = 0.0

    def adjust(self, price: float, side: Side) -> float:
        if self.slippage_bps == 0.0:
            return price
        move = self.slippage_bps / 10_000.0
        return price * (1.0 + move) if side is Side.BUY else price * (1.0 - move)
