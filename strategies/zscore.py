"""Return z-score reversion, exactly as DESIGN.md defines it (the cross-engine rules).

r_t = ln(C_t / C_{t-1}); z_t = (r_t - mean) / std over the last ``window`` returns
*including* r_t, population std (ddof=0); defined once ``window`` returns exist.
Decision at the close of bar t, on the position held after bar t's fills:
flat & z < -entry_z → long; flat & z > entry_z → short; long & z > 0 → close;
short & z < 0 → close. All-in sizing at the next open. An exit leaves the book
flat for at least one close, because the decision sees the position only.

Backtest fast path: :meth:`ZScoreReversion.prepare_backtest` computes every bar's z up
front (:func:`rolling_zscores`, bit for bit what the stream gives) and the bars at which
a decision could fire, so the engine can pass the quiet bars between them in bulk
(:meth:`~ZScoreReversion.quiet_bars`); the run's signals are recorded in one call when it
stops. A paper run streams bar by bar; tests hold both equal.
"""
from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

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


def rolling_zscores(values: Sequence[float] | np.ndarray, window: int) -> np.ndarray:
    """The z-score of every value exactly as :meth:`RollingZScore.update` returns it, bit for bit
    (NaN where it returns None), computed in bulk.

    The stream's arithmetic is replayed, not approximated: up to its first exact recomputation the
    sums are streamed; from then on, in blocks of ``window`` values, each block starts from the
    exact sums (math.fsum) and runs ``(sum + v_k) - v_{k-window}`` left to right
    (``np.add.accumulate`` is sequential), then mean, variance and z with the same roundings.
    """
    v = np.ascontiguousarray(values, dtype=np.float64)
    n, total = window, len(v)
    stream = RollingZScore(n)  # also checks the window
    out = np.full(total, np.nan)
    head = min(total, 2 * n - 2)  # the stream's first exact recomputation is at index 2n - 2
    for k, value in enumerate(v[:head].tolist()):
        z = stream.update(value)
        if z is not None:
            out[k] = z
    if total == head:
        return out
    blocks = len(range(head, total, n))  # blocks of n values, each starting at an exact recomputation
    squares = v * v
    pad = np.zeros(blocks * n - (total - head))

    def running_sums(x: np.ndarray) -> np.ndarray:
        steps = np.empty((blocks, 2 * n - 1))
        # the windows ending at each block's start are back to back; a memoryview slice iterates as
        # plain floats without building a list of every value
        values, first = memoryview(x), head - n + 1
        steps[:, 0] = [math.fsum(values[first + k * n:first + (k + 1) * n]) for k in range(blocks)]
        x = np.concatenate([x, pad])
        steps[:, 1::2] = x[head:head + blocks * n].reshape(blocks, n)[:, 1:]
        steps[:, 2::2] = x[head - n:head - n + blocks * n].reshape(blocks, n)[:, 1:]
        np.negative(steps[:, 2::2], out=steps[:, 2::2])  # x + (-y) rounds exactly as x - y
        return np.add.accumulate(steps, axis=1)[:, 0::2].reshape(-1)[:total - head]

    mean = running_sums(v) / n
    var = running_sums(squares) / n - mean * mean
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (v[head:] - mean) / np.sqrt(var)
    z[var <= 0.0] = 0.0
    out[head:] = z
    return out


def log_returns(close: np.ndarray) -> np.ndarray:
    """ln(C_t / C_{t-1}) with ``math.log``, as the stream computes it (numpy's log differs in the
    last bit for about 0.3 % of values, which would move a z-score by as much)."""
    ratios = np.asarray(close[1:], dtype=np.float64) / np.asarray(close[:-1], dtype=np.float64)
    # a memoryview iterates as plain floats: no list of every ratio is built
    return np.fromiter(map(math.log, memoryview(ratios)), dtype=np.float64, count=len(ratios))


def next_true(mask: np.ndarray) -> np.ndarray:
    """For every index i, the first j >= i where ``mask[j]`` (len(mask) where none): one lookup
    answers "when can the next decision fire?"."""
    n = len(mask)
    at = np.where(mask, np.arange(n, dtype=np.int64), n)
    return np.minimum.accumulate(at[::-1])[::-1]


class _Prepared:
    """A series' z-scores and, per bar, the next bar at which a decision can fire from each book."""

    __slots__ = ("series", "ts", "z", "first", "next_entry", "next_long_exit", "next_short_exit")

    def __init__(self, series: Any, config: ZScoreConfig) -> None:
        self.series = series
        ts = np.asarray(series.ts_ms, dtype=np.int64)
        z = np.full(len(ts), np.nan)
        if len(z) > 1:
            z[1:] = rolling_zscores(log_returns(series.close), config.window)
        # The stream has no z before bar ``window`` (no previous close, then window - 1 returns).
        self.first = min(config.window, len(z))
        entry = z < -config.entry_z
        if not config.long_only:
            entry |= z > config.entry_z
        # Typed arrays, not numpy: read one item at a time in the loop, where indexing an array
        # gives a plain int or float several times faster than a numpy scalar.
        self.ts, self.z = _typed("q", ts), _typed("d", z)
        self.next_entry = _typed("q", next_true(entry))
        self.next_long_exit = _typed("q", next_true(z > config.exit_z))
        self.next_short_exit = _typed("q", next_true(z < -config.exit_z))


def _typed(code: str, values: np.ndarray) -> array:
    return array(code, np.ascontiguousarray(values, dtype=np.int64 if code == "q" else np.float64).tobytes())


class ZScoreReversion(Strategy):
    name = "zscore"

    def __init__(self, config: ZScoreConfig = ZScoreConfig()) -> None:
        self.config = config
        # Config fields copied to attributes: read once per bar in the hot loop.
        self._entry_z, self._exit_z, self._long_only = config.entry_z, config.exit_z, config.long_only
        self._z = RollingZScore(config.window)
        self._prev_close: float | None = None
        self._prepared: _Prepared | None = None
        self._index = 0  # the prepared series' bar that on_bar sees next

    def warmup_bars(self, timeframe_ms: int) -> int:
        return self.config.window + 2  # window returns need window + 1 closes, plus one spare

    def prepare_backtest(self, series: Any) -> None:
        """Every bar's z up front; each uses returns up to its own bar only, so nothing leaks."""
        if self._prepared is None or self._prepared.series is not series:
            self._prepared = _Prepared(series, self.config)

    def on_start(self, ctx: Context) -> None:
        self._z = RollingZScore(self.config.window)
        self._prev_close = None
        self._index = 0

    def on_stop(self, ctx: Context) -> None:
        prepared = self._prepared
        if prepared is not None and self._index > prepared.first:  # the prepared run's signals, in one call
            seen = slice(prepared.first, self._index)
            ctx.record_signals(prepared.ts[seen], prepared.z[seen], self._entry_z)
        self._prepared = None  # one run's precomputation (~40 MB on 1M bars): not kept past its run

    def on_bar(self, bar: Bar, ctx: Context) -> None:
        prepared = self._prepared
        if prepared is None:
            close = bar.close
            prev = self._prev_close
            self._prev_close = close
            if prev is None:
                return
            z = self._z.update(math.log(close / prev))
            if z is None:
                return
            ctx.record_signal(z, self._entry_z)
        else:  # prepared: every bar's signal is recorded at once when the run stops (on_stop)
            i = self._index
            if i >= len(prepared.ts) or prepared.ts[i] != bar.ts_ms:
                raise RuntimeError(f"bar {bar.ts_ms} is not the prepared series' bar {i}: prepare_backtest() "
                                   "must be given the bars the run replays")
            self._index = i + 1
            if i < prepared.first:
                return
            z = prepared.z[i]
        entry_z, exit_z = self._entry_z, self._exit_z
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

    # --- backtest fast path -------------------------------------------------------------------------
    def quiet_bars(self, position_qty: float, limit: int) -> int:
        """Bars from the next one until the next whose z can fire a decision for this position."""
        prepared = self._prepared
        i = self._index
        if prepared is None or i < prepared.first:
            return 0
        if position_qty == 0.0:
            fire = prepared.next_entry
        else:
            fire = prepared.next_long_exit if position_qty > 0.0 else prepared.next_short_exit
        return min(fire[i] - i, limit) if i < len(fire) else 0

    def skip_bars(self, count: int, ctx: Context) -> None:
        assert self._prepared is not None
        self._index += count  # their signals are recorded with the others' in on_stop
