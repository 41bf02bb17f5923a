"""Closed-form truths the score model is tested against (float64 torch).

For x ~ N(μ, τ² I) in d dims and x̃ = x + σ z:
    p_σ = N(μ, (τ² + σ²) I),        ∇ log p_σ(x̃) = -(x̃ - μ) / (τ² + σ²)
    E[x | x̃] = (σ² μ + τ² x̃) / (τ² + σ²)
    DSM floor (λ = σ²): min over s of ½ E||σ s(x̃) + z||² = ½ E||z - E[z|x̃]||²
        = ½ tr Cov(z | x̃) = (d/2) · τ² / (τ² + σ²)
      (Cov(z, x̃) = σ I, Var x̃ = (τ² + σ²) I, so Cov(z | x̃) = (1 - σ²/(τ² + σ²)) I).
      At the optimum the per-sample loss is (c/2) χ²_d with c = τ²/(τ²+σ²),
      so its std is c·sqrt(d/2).
For a mixture Σ_k w_k N(μ_k, s² I):
    p_σ = Σ_k w_k N(μ_k, (s² + σ²) I), responsibilities r_k(x̃) ∝ w_k N(x̃; μ_k, (s²+σ²) I)
    ∇ log p_σ(x̃) = -Σ_k r_k (x̃ - μ_k) / (s² + σ²)
    E[x | x̃] = Σ_k r_k [μ_k + s² / (s² + σ²) (x̃ - μ_k)]   (Bayes per component, then mix)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class GaussianTruth:
    mu: tuple[float, ...]
    tau: float

    @property
    def d(self) -> int:
        return len(self.mu)

    def _mu(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.mu, dtype=x.dtype)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(self.mu) + self.tau * rng.standard_normal((n, self.d))

    def score(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return -(x - self._mu(x)) / (self.tau**2 + sigma**2)

    def posterior_mean(self, x_noisy: torch.Tensor, sigma: float) -> torch.Tensor:
        return (sigma**2 * self._mu(x_noisy) + self.tau**2 * x_noisy) / (self.tau**2 + sigma**2)

    def dsm_floor(self, sigma: float) -> float:
        return 0.5 * self.d * self.tau**2 / (self.tau**2 + sigma**2)

    def dsm_floor_sample_std(self, sigma: float) -> float:
        return self.tau**2 / (self.tau**2 + sigma**2) * math.sqrt(self.d / 2)


@dataclass(frozen=True)
class MixtureTruth:
    weights: tuple[float, ...]
    means: tuple[tuple[float, ...], ...]
    comp_std: float = 1.0

    def _params(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor(self.weights, dtype=dtype), torch.tensor(self.means, dtype=dtype)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        k = rng.choice(len(self.weights), size=n, p=np.asarray(self.weights))
        return np.asarray(self.means)[k] + self.comp_std * rng.standard_normal((n, len(self.means[0])))

    def responsibilities(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        w, mu = self._params(x.dtype)
        var = self.comp_std**2 + sigma**2
        logits = torch.log(w)[None, :] - 0.5 * (x[:, None, :] - mu[None]).pow(2).sum(-1) / var  # (n, K)
        return torch.softmax(logits, dim=1)

    def log_density(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        w, mu = self._params(x.dtype)
        var = self.comp_std**2 + sigma**2
        d = x.shape[1]
        log_comp = -0.5 * (x[:, None, :] - mu[None]).pow(2).sum(-1) / var - 0.5 * d * math.log(2 * math.pi * var)
        return torch.logsumexp(torch.log(w)[None, :] + log_comp, dim=1)

    def score(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        _, mu = self._params(x.dtype)
        r = self.responsibilities(x, sigma)  # (n, K)
        return -(r[..., None] * (x[:, None, :] - mu[None])).sum(1) / (self.comp_std**2 + sigma**2)

    def posterior_mean(self, x_noisy: torch.Tensor, sigma: float) -> torch.Tensor:
        _, mu = self._params(x_noisy.dtype)
        r = self.responsibilities(x_noisy, sigma)  # (n, K)
        shrink = self.comp_std**2 / (self.comp_std**2 + sigma**2)
        per_comp = mu[None] + shrink * (x_noisy[:, None, :] - mu[None])  # (n, K, d)
        return (r[..., None] * per_comp).sum(1)


GAUSSIAN = GaussianTruth(mu=(1.0, -2.0), tau=1.5)
MIXTURE = MixtureTruth(weights=(0.2, 0.8), means=((-5.0, -5.0), (5.0, 5.0)))


def small_mode_share(x: torch.Tensor | np.ndarray) -> float:
    """Share of points nearer (-5,-5) than (5,5), i.e. with x1 + x2 < 0."""
    arr = x.detach().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return float(np.mean(arr.sum(axis=1) < 0))


def relative_error(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    """sqrt(mean ||est - truth||²) / sqrt(mean ||truth||²) over rows."""
    est, tru = estimate.double(), truth.double()
    return float(((est - tru).pow(2).sum(1).mean() / tru.pow(2).sum(1).mean()).sqrt())
