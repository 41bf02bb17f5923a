"""Causal features of hourly bars, vectorised and bar-by-bar, plus their standardiser.

Feature row t uses bars 0..t only (the bar at t is closed when row t exists), so a
decision at the close of bar t may use it. Rows before enough history are NaN.

With r_t = ln(C_t / C_{t-1}) and the default windows:
    ret_k              = ln(C_t / C_{t-k})                   k = 1, 4, 24
    log_vol_24         = ln(std(r_{t-23..t}) + floor)        population std (ddof=0)
    log_vol_ratio      = ln((std(r_{t-23..t}) + floor) / (std(r_{t-167..t}) + floor))
    log_volume_rel_24  = ln((V_t + eps) / (mean(V_{t-23..t}) + eps))
The first complete row is t = 168 (169 bars: 168 returns need 169 closes).

``compute_features`` (whole arrays, for backtests and training) and
``IncrementalFeatures`` (one bar at a time, for paper trading) compute the same
numbers with the same reductions; a test holds them equal to 1e-9.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

_CHUNK_ROWS = 8192  # rolling std in chunks: bounds memory at 8192 x window floats


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """Window lengths (in bars) and numerical floors of the feature set."""

    return_windows_bars: tuple[int, ...] = (1, 4, 24)
    vol_window_bars: int = 24
    vol_long_window_bars: int = 168
    volume_window_bars: int = 24
    vol_floor: float = 1e-12  # added to a std before its log: a flat window stays finite
    volume_eps: float = 1e-8  # added to volume and its mean: zero-volume candles stay finite

    def __post_init__(self) -> None:
        if not self.return_windows_bars or any(int(k) != k or k < 1 for k in self.return_windows_bars):
            raise ValueError(f"return_windows_bars must be positive ints, got {self.return_windows_bars}")
        for name in ("vol_window_bars", "vol_long_window_bars"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be >= 2 (a std needs two returns), got {getattr(self, name)}")
        if self.volume_window_bars < 1:
            raise ValueError(f"volume_window_bars must be >= 1, got {self.volume_window_bars}")
        if not (self.vol_floor > 0 and self.volume_eps > 0):
            raise ValueError("vol_floor and volume_eps must be > 0")

    @property
    def names(self) -> tuple[str, ...]:
        rets = tuple(f"ret_{k}" for k in self.return_windows_bars)
        return rets + (
            f"log_vol_{self.vol_window_bars}",
            f"log_vol_ratio_{self.vol_window_bars}_{self.vol_long_window_bars}",
            f"log_volume_rel_{self.volume_window_bars}",
        )

    @property
    def n_features(self) -> int:
        return len(self.return_windows_bars) + 3

    @property
    def first_valid_index(self) -> int:
        """Index of the first complete row (a std over w returns needs w+1 closes)."""
        return max(
            max(self.return_windows_bars),
            self.vol_window_bars,
            self.vol_long_window_bars,
            self.volume_window_bars - 1,
        )

    @property
    def warmup_bars(self) -> int:
        """Bars needed before the first complete feature row (169 by default)."""
        return self.first_valid_index + 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "return_windows_bars": list(self.return_windows_bars),
            "vol_window_bars": self.vol_window_bars,
            "vol_long_window_bars": self.vol_long_window_bars,
            "volume_window_bars": self.volume_window_bars,
            "vol_floor": self.vol_floor,
            "volume_eps": self.volume_eps,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        return cls(**{**d, "return_windows_bars": tuple(d["return_windows_bars"])})


def _check_bar_arrays(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    arrays = [np.asarray(a, dtype=np.float64) for a in (open_, high, low, close, volume)]
    n = arrays[0].shape
    for name, a in zip(("open", "high", "low", "close", "volume"), arrays):
        if a.ndim != 1 or a.shape != n:
            raise ValueError(f"{name} must be 1-D with the same length as open, got shape {a.shape} vs {n}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or inf at index {int(np.flatnonzero(~np.isfinite(a))[0])}")
    close, volume = arrays[3], arrays[4]
    if np.any(close <= 0):
        raise ValueError(f"close must be > 0, bad at index {int(np.flatnonzero(close <= 0)[0])}")
    if np.any(volume < 0):
        raise ValueError(f"volume must be >= 0, bad at index {int(np.flatnonzero(volume < 0)[0])}")
    return close, volume


def _rolling_std(r: np.ndarray, window: int) -> np.ndarray:
    """Population std of each length-`window` run of r; out[j] covers r[j : j+window].

    Two-pass (mean, then squared deviations) in chunks, like np.std, so a flat
    window gives exactly 0 (a running-sum formula would give rounding noise that
    the log would blow up).
    """
    windows = sliding_window_view(r, window)  # (m, window), no copy
    out = np.empty(windows.shape[0])
    for start in range(0, windows.shape[0], _CHUNK_ROWS):
        out[start : start + _CHUNK_ROWS] = np.std(windows[start : start + _CHUNK_ROWS], axis=1)
    return out


def compute_features(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    spec: FeatureSpec = FeatureSpec(),
) -> np.ndarray:
    """Feature matrix (n, spec.n_features) for n bars; rows < spec.first_valid_index are NaN.

    Open, high and low are validated but not used by the default features; they
    are in the signature so a feature set that needs them does not change callers.
    Raises ValueError on NaN/inf, non-positive close, negative volume or ragged arrays.
    """
    close, volume = _check_bar_arrays(open_, high, low, close, volume)
    n = close.shape[0]
    out = np.full((n, spec.n_features), np.nan)
    t0 = spec.first_valid_index
    if n <= t0:
        return out
    col = 0
    for k in spec.return_windows_bars:  # ret_k[t] = ln C_t - ln C_{t-k}, as ln(C_t / C_{t-k})
        out[k:, col] = np.log(close[k:] / close[:-k])
        col += 1
    r = np.log(close[1:] / close[:-1])  # r[j] is the return of bar j+1
    w, wl = spec.vol_window_bars, spec.vol_long_window_bars
    std_short = np.full(n, np.nan)
    std_short[w:] = _rolling_std(r, w)  # bar t covers r[t-w .. t-1] = returns of bars t-w+1..t
    std_long = np.full(n, np.nan)
    std_long[wl:] = _rolling_std(r, wl)
    out[:, col] = np.log(std_short + spec.vol_floor)
    out[:, col + 1] = np.log((std_short + spec.vol_floor) / (std_long + spec.vol_floor))
    wv = spec.volume_window_bars
    mean_v = np.full(n, np.nan)
    mean_v[wv - 1 :] = sliding_window_view(volume, wv).mean(axis=1)
    out[:, col + 2] = np.log((volume + spec.volume_eps) / (mean_v + spec.volume_eps))
    out[:t0] = np.nan  # whole rows or nothing: callers drop warm-up rows with one mask
    return out


class _RollingMoments:
    """Sum and sum of squares of the last `size` values, O(1) per push.

    Running sums drift by rounding and cancel badly when the window is (nearly)
    flat, so the sums are rebuilt exactly every `size` pushes, and a variance
    that is tiny against the mean square is recomputed two-pass (like np.std):
    a flat window then gives exactly 0, as in compute_features.
    """

    __slots__ = ("_values", "_size", "_sum", "_sumsq", "_since_rebuild", "_peak_sq")

    def __init__(self, size: int) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._size = size
        self._sum = 0.0
        self._sumsq = 0.0
        self._since_rebuild = 0
        self._peak_sq = 0.0  # largest v² added or removed since the last rebuild: bounds the rounding residue

    def push(self, value: float) -> None:
        values = self._values
        if len(values) == self._size:
            old = values[0]
            self._sum -= old
            self._sumsq -= old * old
            self._peak_sq = max(self._peak_sq, old * old)
        values.append(value)
        self._sum += value
        self._sumsq += value * value
        self._peak_sq = max(self._peak_sq, value * value)
        self._since_rebuild += 1
        if self._since_rebuild >= self._size:
            self._sum = math.fsum(values)
            self._sumsq = math.fsum(v * v for v in values)
            self._since_rebuild = 0
            self._peak_sq = max((v * v for v in values), default=0.0)

    def mean(self) -> float:
        return self._sum / len(self._values)

    def std(self) -> float:
        """Population std (ddof=0) of the window."""
        n = len(self._values)
        mean = self._sum / n
        mean_sq = self._sumsq / n
        var = mean_sq - mean * mean
        # Cancellation zone (a flat or nearly flat window): the running sums carry a rounding
        # residue of up to ~size·eps·peak², so recompute two-pass when var is not far above it.
        if var <= 1e-6 * mean_sq or var <= 1e4 * self._size * 2.2e-16 * self._peak_sq:
            mean = math.fsum(self._values) / n
            var = math.fsum((v - mean) ** 2 for v in self._values) / n
        return math.sqrt(var)


class IncrementalFeatures:
    """Bar-by-bar features for live use: `update` returns the row for the bar just closed.

    O(1) per bar (running sums, ~5 µs), with no history growth. Returns None
    until spec.warmup_bars bars have been seen; afterwards the row equals
    compute_features on the same bars (to rounding, 1e-9).
    """

    def __init__(self, spec: FeatureSpec = FeatureSpec()) -> None:
        self.spec = spec
        self._closes: deque[float] = deque(maxlen=max(spec.return_windows_bars) + 1)
        self._short = _RollingMoments(spec.vol_window_bars)
        self._long = _RollingMoments(spec.vol_long_window_bars)
        self._volumes = _RollingMoments(spec.volume_window_bars)
        self._n_bars = 0

    @property
    def n_bars(self) -> int:
        return self._n_bars

    def update(self, open_: float, high: float, low: float, close: float, volume: float) -> np.ndarray | None:
        """Consume one closed bar; return its feature row (n_features,) or None during warm-up."""
        if not (math.isfinite(close) and close > 0):
            raise ValueError(f"close must be finite and > 0, got {close}")
        if not (math.isfinite(volume) and volume >= 0):
            raise ValueError(f"volume must be finite and >= 0, got {volume}")
        spec = self.spec
        closes = self._closes
        if closes:
            r = math.log(close / closes[-1])
            self._short.push(r)
            self._long.push(r)
        closes.append(close)
        self._volumes.push(volume)
        self._n_bars += 1
        if self._n_bars < spec.warmup_bars:
            return None
        values = [math.log(close / closes[-1 - k]) for k in spec.return_windows_bars]
        std_short = self._short.std() + spec.vol_floor
        std_long = self._long.std() + spec.vol_floor
        mean_v = self._volumes.mean()
        values += [math.log(std_short), math.log(std_short / std_long),
                   math.log((volume + spec.volume_eps) / (mean_v + spec.volume_eps))]
        return np.array(values)


@dataclass
class Standardizer:
    """Per-column (x - mean) / std, clipped to ±clip; fit on training rows only.

    Fitting on the training window alone keeps the out-of-sample block from
    leaking its own scale into the features. A constant column gets std 1 (its
    standardised value is then 0) instead of a division by zero.
    """

    mean: np.ndarray
    std: np.ndarray
    clip: float = 10.0
    names: tuple[str, ...] = field(default=())

    @classmethod
    def fit(cls, x_train: np.ndarray, clip: float = 10.0, names: tuple[str, ...] = ()) -> Standardizer:
        """mean_j = avg_i x_ij, std_j = sqrt(avg_i (x_ij - mean_j)^2) over the given rows."""
        x = np.asarray(x_train, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"x_train must be 2-D with >= 2 rows, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("x_train has NaN/inf: drop warm-up rows (np.isfinite(x).all(axis=1)) first")
        std = x.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        return cls(mean=x.mean(axis=0), std=std, clip=clip, names=tuple(names))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Works on (d,) or (n, d); NaN rows stay NaN."""
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.std
        return np.clip(z, -self.clip, self.clip)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "clip": float(self.clip),
            "names": list(self.names),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Standardizer:
        return cls(
            mean=np.asarray(d["mean"], dtype=np.float64),
            std=np.asarray(d["std"], dtype=np.float64),
            clip=float(d["clip"]),
            names=tuple(d.get("names", ())),
        )

