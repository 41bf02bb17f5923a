"""The noise ladder σ_1 > σ_2 > ... > σ_L used by training and annealed Langevin.

σ_1 must be about the largest distance between data points, so that at σ_1 the
noisy data is one blob and Langevin can move mass between far-apart modes
(Song & Ermon 2020, "Improved techniques", technique 1). It is therefore
measured from the standardised training data, not fixed at 1.0: on BTC features
it is 16-27. σ_L is small (~0.01-0.05) so the last level is close to the data.
"""
from __future__ import annotations

import numpy as np

DEFAULT_N_SIGMAS = 15
DEFAULT_SIGMA_MIN = 0.02


def geometric_sigmas(sigma_max: float, sigma_min: float = DEFAULT_SIGMA_MIN, n: int = DEFAULT_N_SIGMAS) -> np.ndarray:
    """Descending ladder σ_i = σ_max · (σ_min / σ_max)^(i / (n-1)), i = 0..n-1 (float64, shape (n,))."""
    if not (np.isfinite(sigma_max) and np.isfinite(sigma_min)) or not (sigma_max > sigma_min > 0):
        raise ValueError(f"need sigma_max > sigma_min > 0, got sigma_max={sigma_max}, sigma_min={sigma_min}")
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    return np.geomspace(sigma_max, sigma_min, n)


def sigma_max_from_data(x: np.ndarray, max_points: int = 1500, seed: int = 0) -> float:
    """Largest pairwise Euclidean distance among (a seeded subsample of) the rows of x.

    Uses ||a - b||² = ||a||² + ||b||² - 2 a·b on at most `max_points` rows
    (1500 rows: 2.25M pairs, ~20 ms), drawn without replacement.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"x must be 2-D with >= 2 rows, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x has NaN/inf rows: drop feature warm-up rows first")
    if x.shape[0] > max_points:
        idx = np.random.default_rng(seed).choice(x.shape[0], size=max_points, replace=False)
        x = x[idx]
    sq = np.einsum("ij,ij->i", x, x)  # (m,)
    d2 = x @ x.T  # (m, m), then in place: sq_i + sq_j - 2 x_i·x_j (one m×m buffer, no temporaries)
    d2 *= -2.0
    d2 += sq[:, None]
    d2 += sq[None, :]
    d_max = float(np.sqrt(max(float(d2.max()), 0.0)))
    if d_max <= 0:
        raise ValueError("all rows of x are identical: no spread to set sigma_max from")
    return d_max
