"""Per-fold sanity check: do annealed-Langevin samples from the model look like its training data?

Compares per-feature means and stds, and the sliced Wasserstein-2 distance
    SWD(A, B) = sqrt( mean over unit θ of W2²(θᵀA, θᵀB) ),
with W2² of two 1-D samples = mean squared gap between their quantiles at
levels (k + ½)/m. The same SWD between two random halves of the data is
reported as the scale of pure sampling noise: a model whose SWD is a few times
that reference reproduces the data's joint shape; one far above it does not.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from models.network import ScoreMLP
from models.runtime import torch_threads
from models.samplers import annealed_langevin


@dataclass(frozen=True)
class SampleCheck:
    n_samples: int
    n_data: int
    sample_mean: list[float]
    sample_std: list[float]
    data_mean: list[float]
    data_std: list[float]
    n_diverged: int  # samples that left the reals (NaN/inf): any makes swd inf
    swd: float  # samples vs all data
    swd_reference: float  # min(n_samples, n/2) rows of a random half of the data vs the other half
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, n_projections: int = 64, seed: int = 0) -> float:
    """SWD-2 between point sets a (n, d) and b (m, d) over seeded random unit directions."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need (n, d) and (m, d) arrays with >= 2 rows, got {a.shape}, {b.shape}")
    theta = np.random.default_rng(seed).standard_normal((a.shape[1], n_projections))  # (d, P)
    theta /= np.linalg.norm(theta, axis=0, keepdims=True)
    m = min(len(a), len(b))
    levels = (np.arange(m) + 0.5) / m
    qa = _empirical_quantiles(a @ theta, levels)  # (m, P)
    qb = _empirical_quantiles(b @ theta, levels)  # (m, P)
    return float(np.sqrt(np.mean((qa - qb) ** 2)))


def _empirical_quantiles(projected: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Inverse empirical CDF F⁻¹(u) = sorted[floor(u·n)] per column (exact order statistics, no interpolation)."""
    n = projected.shape[0]
    idx = np.minimum((levels * n).astype(np.int64), n - 1)
    return np.sort(projected, axis=0)[idx]


def check_samples(
    network: ScoreMLP,
    sigmas: np.ndarray,
    x_data: np.ndarray,
    *,
    n_samples: int = 1000,
    steps_per_sigma: int = 100,
    step_ratio: float = 0.5,
    n_projections: int = 64,
    seed: int = 0,
    threads: int = 1,
) -> SampleCheck:
    """Sample n_samples points by annealed Langevin from x0 ~ N(0, σ_1² I) and compare with x_data.

    x_data: the fold's standardised training features (n, d). The last-level
    step is ε = step_ratio · σ_L² (so α_i = step_ratio · σ_i² at every level),
    and a final Tweedie step removes the last level's noise.
    """
    t0 = time.perf_counter()
    x_data = np.asarray(x_data, dtype=np.float64)
    if x_data.ndim != 2 or x_data.shape[1] != network.dim or len(x_data) < 4:
        raise ValueError(f"x_data must be (n >= 4, {network.dim}), got {x_data.shape}")
    sigmas = np.asarray(sigmas, dtype=np.float64)
    gen = torch.Generator().manual_seed(seed)
    with torch_threads(threads):
        x0 = float(sigmas[0]) * torch.randn((n_samples, network.dim), generator=gen)  # (N, d)
        samples = annealed_langevin(
            network, x0, sigmas, step_ratio * float(sigmas[-1]) ** 2, steps_per_sigma, gen, denoise=True
        ).double().numpy()
    # reference: up to n_samples rows of one random half vs the other half, so its
    # finite-sample noise is comparable with that of the n_samples model draws
    perm = np.random.default_rng(seed).permutation(len(x_data))
    half = len(x_data) // 2
    half_a, half_b = x_data[perm[: min(half, n_samples)]], x_data[perm[half:]]
    finite = np.all(np.isfinite(samples), axis=1)
    kept = samples[finite]
    nan_row = [float("nan")] * x_data.shape[1]
    return SampleCheck(
        n_samples=n_samples,
        n_data=len(x_data),
        sample_mean=kept.mean(axis=0).tolist() if len(kept) else nan_row,
        sample_std=kept.std(axis=0).tolist() if len(kept) else nan_row,
        data_mean=x_data.mean(axis=0).tolist(),
        data_std=x_data.std(axis=0).tolist(),
        n_diverged=int((~finite).sum()),
        swd=sliced_wasserstein(samples, x_data, n_projections, seed) if finite.all() else float("inf"),
        swd_reference=sliced_wasserstein(half_a, half_b, n_projections, seed),
        seconds=time.perf_counter() - t0,
    )
