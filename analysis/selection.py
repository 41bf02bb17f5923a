"""How much of a sweep's best result is luck: Deflated Sharpe Ratio and Probability of Backtest Overfitting.

Pure numpy + the standard library; every Sharpe ratio here is per period (not
annualised), as both papers define them.

Deflated Sharpe Ratio (Bailey & López de Prado, 2014). The best of N trials has
an expected Sharpe above zero even with no skill:

    SR₀ = √V · ((1 − γ) Φ⁻¹(1 − 1/N) + γ Φ⁻¹(1 − 1/(N e)))

with V the variance of the N trials' Sharpe ratios and γ ≈ 0.5772 (Euler–Mascheroni).
The DSR is the probability that the true Sharpe exceeds SR₀, given the best
trial's track length T, skewness γ₃ and (non-excess) kurtosis γ₄:

    DSR = Φ( (ŜR − SR₀) √(T − 1) / √(1 − γ₃ ŜR + (γ₄ − 1)/4 · ŜR²) )

Probability of Backtest Overfitting by combinatorially symmetric cross-validation
(Bailey, Borwein, López de Prado & Zhu, 2015): split the T × N matrix of
per-period returns into S equal blocks of rows; for each of the C(S, S/2) ways to
pick half the blocks as "in sample", take the configuration with the best
in-sample Sharpe, find its relative rank ω among all N on the other half, and
λ = ln(ω / (1 − ω)). PBO is the share of λ ≤ 0: how often the in-sample winner
is no better than the median out of sample.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

EULER_GAMMA = 0.5772156649015329
_N = NormalDist()


@dataclass(frozen=True)
class DeflatedSharpe:
    dsr: float  # probability that the true Sharpe exceeds sr0
    sharpe: float  # the best trial's per-period Sharpe
    sr0: float  # expected maximum Sharpe of n_trials trials without skill
    n_trials: int
    track_length: int  # T, periods in the best trial
    skewness: float
    kurtosis: float  # non-excess (3 for a normal distribution)


@dataclass(frozen=True)
class OverfitProbability:
    pbo: float
    logits: np.ndarray  # λ per combination
    n_splits: int  # S, blocks of rows
    n_combinations: int
    n_configs: int


def sharpe(returns: np.ndarray) -> float:
    """Per-period Sharpe ratio (mean / sample std); 0 for a flat series."""
    r = np.asarray(returns, dtype=float)
    if len(r) < 2:
        return 0.0
    sd = float(np.std(r, ddof=1))
    return float(np.mean(r)) / sd if sd > 0 else 0.0


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """SR₀: the expected best Sharpe of ``n_trials`` skill-less trials whose Sharpes vary by ``sharpe_variance``."""
    if n_trials < 2 or sharpe_variance <= 0:
        return 0.0
    a = _N.inv_cdf(1.0 - 1.0 / n_trials)
    b = _N.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    return math.sqrt(sharpe_variance) * ((1.0 - EULER_GAMMA) * a + EULER_GAMMA * b)


def deflated_sharpe(best_returns: np.ndarray, trial_sharpes: np.ndarray) -> DeflatedSharpe:
    """DSR of the best trial (its per-period returns) among trials with these per-period Sharpes."""
    r = np.asarray(best_returns, dtype=float)
    srs = np.asarray(trial_sharpes, dtype=float)
    srs = srs[np.isfinite(srs)]
    n = max(1, len(srs))
    t = len(r)
    sr = sharpe(r)
    sr0 = expected_max_sharpe(n, float(np.var(srs, ddof=1)) if len(srs) > 1 else 0.0)
    skew, kurt = _moments(r)
    if t < 3:
        return DeflatedSharpe(float("nan"), sr, sr0, n, t, skew, kurt)
    denom = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    z = (sr - sr0) * math.sqrt(t - 1) / math.sqrt(max(denom, 1e-12))
    return DeflatedSharpe(_N.cdf(z), sr, sr0, n, t, skew, kurt)


def probability_of_overfitting(returns: np.ndarray, n_splits: int = 16) -> OverfitProbability:
    """PBO by CSCV of a T × N matrix (rows: periods in time order, columns: configurations).

    ``n_splits`` (S, even) is lowered to fit short histories (at least 2 rows per
    block). The first T mod S rows are dropped so all blocks are equal. The matrix may
    be a transposed view of N per-configuration rows: the blocks' sums are read in place.
    """
    return overfit_from_moments(*matrix_moments(returns, n_splits))


def matrix_moments(returns: np.ndarray, n_splits: int = 16) -> tuple[np.ndarray, np.ndarray, int]:
    """S × N block sums and sums of squares of a T × N matrix's columns, and the periods per block."""
    m = np.asarray(returns, dtype=float)
    if m.ndim != 2 or m.shape[1] < 2:
        raise ValueError("PBO needs a T x N matrix with at least 2 configurations")
    s = split_count(m.shape[0], n_splits)
    moments = [block_moments(m[:, j], s) for j in range(m.shape[1])]
    return np.array([a for a, _ in moments]).T, np.array([b for _, b in moments]).T, m.shape[0] // s


def split_count(t: int, n_splits: int = 16) -> int:
    """S: ``n_splits`` lowered so each of S (even) blocks of a T-period history has at least 2 periods."""
    s = min(n_splits, (t // 2) // 2 * 2)
    if s < 2:
        raise ValueError(f"PBO needs at least 4 periods, got {t}")
    return s


def block_moments(returns: np.ndarray, s: int) -> tuple[np.ndarray, np.ndarray]:
    """One configuration's sum and sum of squares over each of S equal blocks of its returns (the first
    T mod S dropped): all CSCV needs of it, so a sweep's runs can be read one at a time."""
    r = np.asarray(returns, dtype=float)
    blocks = r[len(r) % s:].reshape(s, len(r) // s)
    return blocks.sum(axis=1), np.einsum("br,br->b", blocks, blocks)


def overfit_from_moments(sums: np.ndarray, sq: np.ndarray, rows: int) -> OverfitProbability:
    """PBO from S × N per-block sums and sums of squares (:func:`block_moments`), ``rows`` periods a block."""
    s, n = sums.shape
    if n < 2:
        raise ValueError("PBO needs at least 2 configurations")
    # Every split at once: row c of ``chosen`` marks the S/2 in-sample blocks of combination c.
    combos = np.array(list(itertools.combinations(range(s), s // 2)))
    chosen = np.zeros((len(combos), s))
    chosen[np.arange(len(combos))[:, None], combos] = 1.0
    count = (s // 2) * rows
    is_sr = _block_sharpe(chosen @ sums, chosen @ sq, count)
    oos_sr = _block_sharpe((1.0 - chosen) @ sums, (1.0 - chosen) @ sq, count)
    best_oos = oos_sr[np.arange(len(combos)), np.argmax(is_sr, axis=1)][:, None]
    rank = np.sum(oos_sr < best_oos, axis=1) + 0.5 * (np.sum(oos_sr == best_oos, axis=1) - 1) + 1
    omega = rank / (n + 1)
    lam = np.log(omega / (1.0 - omega))
    return OverfitProbability(float(np.mean(lam <= 0)), lam, s, len(lam), n)


def _block_sharpe(total: np.ndarray, total_sq: np.ndarray, count: int) -> np.ndarray:
    """Sharpe per row and configuration from sums and sums of squares over ``count`` periods."""
    mean = total / count
    var = np.maximum(total_sq / count - mean ** 2, 0.0) * count / max(count - 1, 1)
    sd = np.sqrt(var)
    return np.divide(mean, sd, out=np.zeros_like(mean), where=sd > 0)


def _moments(r: np.ndarray) -> tuple[float, float]:
    """Skewness and non-excess kurtosis (population moments); (0, 3) for a flat series."""
    if len(r) < 3:
        return 0.0, 3.0
    c = r - r.mean()
    m2 = float(np.mean(c ** 2))
    if m2 <= 0:
        return 0.0, 3.0
    return float(np.mean(c ** 3) / m2 ** 1.5), float(np.mean(c ** 4) / m2 ** 2)
