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
from dataclasses import dataclass

from domain.types import Bar
from strategies.base import Context, Strategy


@dataclass(frozen=True)
class ZScoreConfig:
    window: int = 50  # returns in the rolling mean/std, including the current one
    entry_z: float = 2.0  # enter when |z| exceeds this
    exit_z: float = 0.0  # exit when z crosses back through this level
    long_only: bool = False  # never open shorts


class RollingZScore:
    """O(1) rolling z-score of a stream of values (population std).

    A fixed ring buffer with running sums; the sums are recomputed exactly
    (math.fsum) every ``window`` updates, so rounding error cannot accumulate
    over millions of bars.
    """

    __slots__ = ("window", "_ring", "_pos", "_count", "_sum", "_sumsq", "_since_exact")

    def __init__(self, window: int) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        self.window = window
        self._ring = [0.0] * window
        self._pos = 0
        self._count = 0
        self._sum = 0.0
        self._sumsq = 0.0
        self._since_exact = 0

    def update(self, value: float) -> float | None:
        """Add ``value``; return its z-score once the window is full, else None."""
        ring, pos, n = self._ring, self._pos, self.window
        old = ring[pos]
        ring[pos] = value
        self._pos = pos + 1 if pos + 1 < n else 0
        if self._count < n:
            self._count += 1
            self._sum += value
            self._sumsq += value * value
            if self._count < n:
                return None
            total, total_sq = self._sum, self._sumsq
        else:
            total = self._sum + value - old
            total_sq = self._sumsq + value * value - old * old
        since = self._since_exact + 1
        if since >= n:
            since = 0
            total = math.fsum(ring)
            total_sq = math.fsum(v * v for v in ring)
        self._since_exact = since
        self._sum, self._sumsq = total, total_sq
        mean = total / n
        var = total_sq / n - mean * mean
        if var <= 0.0:
            return 0.0
        return (value - mean) / math.sqrt(var)


class ZScoreReversion(Strategy):
    name = "zscore"

    def __init__(self, config: ZScoreConfig = ZScoreConfig()) -> None:
        self.config = config
        # Config fields copied to attributes: read once per bar in the hot loop.
        self._entry_z, self._exit_z, self._long_only = config.entry_z, config.exit_z, config.long_only
        self._z = RollingZScore(config.window)
        self._prev_close: float | None = None

    def warmup_bars(self, timeframe_ms: int) -> int:
        return self.config.window + 2  # window returns need window + 1 closes, plus one spare

    def on_start(self, ctx: Context) -> None:
        self._z = RollingZScore(self.config.window)
        self._prev_close = None

    def on_bar(self, bar: Bar, ctx: Context) -> None:
        close = bar.close
        prev = self._prev_close
        self._prev_close = close
        if prev is None:
            return
        z = self._z.update(math.log(close / prev))
        if z is None:
            return
        entry_z, exit_z = self._entry_z, self._exit_z
        ctx.record_signal(z, entry_z)
        pos = ctx.position_qty
        if pos == 0.0:
            if z < -entry_z:
                ctx.target_percent(1.0, "entry", signal=z, threshold=-entry_z)
            elif z > entry_z and not self._long_only:
                ctx.target_percent(-1.0, "entry", signal=z, threshold=entry_z)
        elif pos > 0.0:
            if z > exit_z:
                ctx.close("signal", signal=z, threshold=exit_z)
        elif z < -exit_z:
            ctx.close("signal", signal=z, threshold=-exit_z)
