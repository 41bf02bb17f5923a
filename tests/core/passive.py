"""Test strategies for passive limit entries, brackets, expiry and the equity floor (both engines)."""
from __future__ import annotations

import math
from typing import Any

from domain.types import Bar, Side
from strategies.base import Strategy
from strategies.zscore import RollingZScore


class PassiveBracket(Strategy):
    """On |z| > 1.2: a passive limit entry 0.3 % through the close (0.8 × equity, expires after
    ``expire`` bars) with a protective stop 1.5 % away placed at the same close (its bracket);
    close at the next open after ``max_hold`` bars in the position."""

    name = "passive_bracket"

    def __init__(self, expire: int = 3, max_hold: int = 12, long_only: bool = False) -> None:
        self.expire, self.max_hold, self.long_only = expire, max_hold, long_only

    def on_start(self, ctx: Any) -> None:
        self._z = RollingZScore(20)
        self._prev: float | None = None

    def on_bar(self, bar: Bar, ctx: Any) -> None:
        prev, self._prev = self._prev, bar.close
        z = None if prev is None else self._z.update(math.log(bar.close / prev))
        if z is None:
            return
        ctx.record_signal(z, 1.2)
        if ctx.position_qty == 0.0 and not ctx.pending_orders:
            if z < -1.2:
                ctx.limit(Side.BUY, bar.close * 0.997, "entry", target_fraction=0.8, expire_after_bars=self.expire,
                          signal=z)
                ctx.stop(Side.SELL, bar.close * 0.985, "stop")
            elif z > 1.2 and not self.long_only:
                ctx.limit(Side.SELL, bar.close * 1.003, "entry", target_fraction=-0.8,
                          expire_after_bars=self.expire, signal=z)
                ctx.stop(Side.BUY, bar.close * 1.015, "stop")
        elif ctx.position_qty != 0.0 and ctx.bars_in_position >= self.max_hold:
            ctx.cancel_all()
            ctx.close("max_hold")


class AllInShortEveryBar(Strategy):
    """Goes all-in short whenever flat (and would do so again after any close-out)."""

    name = "all_in_short"

    def on_start(self, ctx: Any) -> None:
        self.calls = 0

    def on_bar(self, bar: Bar, ctx: Any) -> None:
        self.calls += 1
        if ctx.position_qty == 0.0 and not ctx.pending_orders:
            ctx.target_percent(-1.0, "entry")
