"""Langevin samplers and Tweedie denoising on a score function score_fn(x (n, d), σ: float) -> (n, d).

Langevin convention used throughout (its stationary law is p when s = ∇ log p
and the step is small):
    x ← x + (α/2) · s(x, σ) + √α · z,   z ~ N(0, I)
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

ScoreFn = Callable[[torch.Tensor, float], torch.Tensor]


def _sigma_list(sigmas: Sequence[float] | np.ndarray | torch.Tensor) -> list[float]:
    values = [float(s) for s in (sigmas.tolist() if hasattr(sigmas, "tolist") else sigmas)]
    if not values or any(not s > 0 for s in values):
        raise ValueError(f"sigmas must be a non-empty sequence of positive floats, got {values}")
    return values


@torch.no_grad()
def langevin(
    score_fn: ScoreFn,
    x0: torch.Tensor,
    step: float,
    n_steps: int,
    generator: torch.Generator | None = None,
    *,
    sigma: float,
) -> torch.Tensor:
    """Plain (single-level) Langevin with step α = `step`, using score_fn(·, sigma) every step.

    Kept as the baseline annealing is compared with: on well-separated modes it
    mixes between them only over exponentially many steps, so the modes' weights
    come out as whatever share of x0 started in each basin.
    """
    if not step > 0 or n_steps < 0:
        raise ValueError(f"need step > 0 and n_steps >= 0, got {step}, {n_steps}")
    x = x0.clone()
    noise_scale = step**0.5
    for _ in range(n_steps):
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype)  # (n, d)
        x = x + 0.5 * step * score_fn(x, sigma) + noise_scale * z
    return x


@torch.no_grad()
def annealed_langevin(
    score_fn: ScoreFn,
    x0: torch.Tensor,
    sigmas: Sequence[float] | np.ndarray | torch.Tensor,
    eps: float,
    steps_per_sigma: int,
    generator: torch.Generator | None = None,
    *,
    denoise: bool = False,
) -> torch.Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1) down a descending σ ladder.

    At level i the step is α_i = ε · σ_i² / σ_L² (σ_L the smallest σ; so ε is the
    step at the last level and α_i / σ_i² is the same at every level), and each of
    `steps_per_sigma` steps is x ← x + (α_i/2) s(x, σ_i) + √α_i z.
    Stability needs ε / σ_L² < 2. The end law is only right if each level
    equilibrates at the scale of the data: (ε / σ_L²) · steps_per_sigma ≳ 50
    (e.g. 0.5 and 100). With 0.1 and 100 (NCSN's toy setting) samples of a
    Gaussian come out ~8% too wide (tests/models/test_samplers.py).
    With denoise=True a final Tweedie step x ← x + σ_L² s(x, σ_L) removes the
    last level's noise (Jolicoeur-Martineau et al. 2020).
    x0: (n, d), usually N(0, σ_1² I). Returns (n, d).
    """
    levels = _sigma_list(sigmas)
    if not eps > 0 or steps_per_sigma < 1:
        raise ValueError(f"need eps > 0 and steps_per_sigma >= 1, got {eps}, {steps_per_sigma}")
    sigma_last = min(levels)
    x = x0.clone()
    for sigma in levels:
        alpha = eps * sigma**2 / sigma_last**2
        noise_scale = alpha**0.5
        for _ in range(steps_per_sigma):
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype)  # (n, d)
            x = x + 0.5 * alpha * score_fn(x, sigma) + noise_scale * z
    if denoise:
        x = tweedie_denoise(score_fn, x, levels[-1])
    return x


@torch.no_grad()
def tweedie_denoise(score_fn: ScoreFn, x_noisy: torch.Tensor, sigma: float) -> torch.Tensor:
    """Tweedie's formula for x̃ = x + σz: E[x | x̃] = x̃ + σ² ∇ log p_σ(x̃) ≈ x̃ + σ² s(x̃, σ)."""
    return x_noisy + sigma**2 * score_fn(x_noisy, sigma)


@torch.no_grad()
def inpaint_langevin(
    score_fn: ScoreFn,
    known: torch.Tensor,
    known_mask: torch.Tensor,
    sigmas: Sequence[float] | np.ndarray | torch.Tensor,
    steps_per_sigma: int,
    noise: torch.Tensor,
    init: torch.Tensor,
    *,
    step_scale: float = 1.0,
    step_floor: float = 0.3,
) -> torch.Tensor:
    """Annealed-Langevin inpainting: samples of the unknown coordinates given the known ones.

    At level σ_i every step first re-noises the known coordinates to their value
    at that level, x_known + σ_i·ε (NCSN's inpainting sampler), then moves only
    the unknown ones: x_u ← x_u + (α_i/2) s_u(x, σ_i) + √α_i z with the FLOORED
    step α_i = step_scale · max(σ_i, step_floor)². The plain α ∝ σ² step stops
    moving the unknowns once σ is far below the conditional's width (conditional
    means came out 0.72-0.85 × truth on a 2-D Gaussian); the floor fixes that.
    Stability needs α below ~2× the conditional variance: keep step_floor under
    the conditional's std.

    known: (n, d) with the known coordinates filled (others ignored);
    known_mask: (d,) bool; noise: (L·steps_per_sigma, n, d) standard normals
    (the caller owns them, so a batch and per-row calls can use the same draws);
    init: (n, d) starting values of the unknowns. Returns (n, d) with the known
    coordinates at their clean values.
    """
    levels = _sigma_list(sigmas)
    if steps_per_sigma < 1 or not step_scale > 0 or step_floor < 0:
        raise ValueError(f"need steps_per_sigma >= 1, step_scale > 0, step_floor >= 0, got "
                         f"{steps_per_sigma}, {step_scale}, {step_floor}")
    if noise.shape != (len(levels) * steps_per_sigma, *known.shape):
        raise ValueError(f"noise must have shape {(len(levels) * steps_per_sigma, *known.shape)}, got {tuple(noise.shape)}")
    known_f = known_mask.to(known.dtype)  # (d,) 1 where known
    unknown_f = 1.0 - known_f
    x_u = init * unknown_f
    k = 0
    for sigma in levels:
        alpha = step_scale * max(sigma, step_floor) ** 2
        for _ in range(steps_per_sigma):
            z = noise[k]
            k += 1
            x = known * known_f + sigma * z * known_f + x_u  # known re-noised to level σ, unknowns as they are
            s = score_fn(x, sigma)
            x_u = x_u + (0.5 * alpha * s + alpha**0.5 * z) * unknown_f
    return known * known_f + x_u
