"""Buy-and-hold baseline: all-in long at the second bar's open, held to the end."""
from __future__ import annotations

from dataclasses import dataclass

from domain.types import Bar
from strategies.base import Context, Strategy


@dataclass(frozen=True)
class BuyAndHoldConfig:
    fraction: float = 1.0  # share of equity to hold (1.0 = all cash, fee included)


class BuyAndHold(Strategy):
    name = "buyhold"

    def __init__(self, config: BuyAndHoldConfig = BuyAndHoldConfig()) -> None:
        self.config = config

    def on_bar(self, bar: Bar, ctx: Context) -> None:
        if ctx.position_qty == 0.0 and not ctx.pending_orders:
            ctx.target_percent(self.config.fraction, "entry")
