"""Return z-score reversion, exactly as DESIGN.md defines it (the cross-engine rules).

r_t = ln(C_t / C_{t-1}); z_t = (r_t - mean) / std over the last ``window`` returns
*including* r_t, population std (ddof=0); defined once ``window`` returns exist.
Decision at the close of bar t, on the position held after bar t's fills:
flat & z < -entry_z → long; flat & z > entry_z → short; long & z > 0 → close;
short & z < 0 → close. All-in sizing at the next open. An exit leaves the book
flat for at least one close, because the decision sees the position only.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from engine.types import Bar
from strategies.base import Context, Strategy


@dataclass(frozen=True)
class ZScoreConfig:
    window: int = 50  # returns in the rolling mean/std, including the current one
    entry_z: float = 2.0  # enter when |z| exceeds this
    exit_z: float = 0.0  # exit when z crosses back through this level
    long_only: bool = False  # never open shorts


class RollingZScore:
    """O(1) rolling z-score of a stream of values (population std).

    Running sums are recomputed exactly every ``window`` updates, so rounding
    error cannot accumulate over millions of bars.
    """

    __slots__ = ("window", "_values", "_sum", "_sumsq", "_since_exact")

    def __init__(self, window: int) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        self.window = window
        self._values: deque[float] = deque()
        self._sum = 0.0
        self._sumsq = 0.0
        self._since_exact = 0

    def update(self, value: float) -> float | None:
        """Add ``value``; return its z-score once the window is full, else None."""
        values = self._values
        values.append(value)
        self._sum += value
        self._sumsq += value * value
        n = len(values)
        if n > self.window:
            old = values.popleft()
            self._sum -= old
            self._sumsq -= old * old
            n -= 1
        elif n < self.window:
            return None
        self._since_exact += 1
        if self._since_exact >= self.window:
            self._since_exact = 0
            self._sum = math.fsum(values)
            self._sumsq = math.fsum(v * v for v in values)
        mean = self._sum / n
        var = self._sumsq / n - mean * mean
        if var <= 0.0:
            return 0.0
        return (value - mean) / math.sqrt(var)


class ZScoreReversion(Strategy):
    name = "zscore"

    def __init__(self, config: ZScoreConfig = ZScoreConfig()) -> None:
        self.config = config
        self._z = RollingZScore(config.window)
        self._prev_close: float | None = None

    def on_start(self, ctx: Context) -> None:
        self._z = RollingZScore(self.config.window)
        self._prev_close = None

    def on_bar(self, bar: Bar, ctx: Context) -> None:
        prev = self._prev_close
        self._prev_close = bar.close
        if prev is None:
            return
        z = self._z.update(math.log(bar.close / prev))
        if z is None:
            return
        ctx.record_signal(z, self.config.entry_z)
        pos = ctx.position_qty
        cfg = self.config
        if pos == 0.0:
            if z < -cfg.entry_z:
                ctx.target_percent(1.0, "entry", signal=z, threshold=-cfg.entry_z)
            elif z > cfg.entry_z and not cfg.long_only:
                ctx.target_percent(-1.0, "entry", signal=z, threshold=cfg.entry_z)
        elif pos > 0.0:
            if z > cfg.exit_z:
                ctx.close("signal", signal=z, threshold=cfg.exit_z)
        elif z < -cfg.exit_z:
            ctx.close("signal", signal=z, threshold=-cfg.exit_z)
