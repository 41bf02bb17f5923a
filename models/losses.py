"""Score-matching objectives as pure functions with one signature, so the trainer never branches.

    loss_fn(model, x, sigmas, generator) -> LossOutput

x: (n, d) clean (standardised) data; sigmas: (L,) ladder tensor. Each sample gets
its own σ drawn uniformly from the ladder, is perturbed x̃ = x + σ z (z ~ N(0, I)),
and every objective is weighted by λ(σ) = σ², which makes all levels O(1)
(Song & Ermon 2019, NCSN) so no σ dominates the gradient.

All three target the score of the perturbed density p_σ, ∇ log p_σ(x̃):
- dsm:    ½ σ² ||s(x̃) + z/σ||² = ½ ||σ s(x̃) + z||²                (Vincent 2011)
- ssm:    σ² [ vᵀ∇ₓ(vᵀ s(x̃)) + ½ (vᵀ s(x̃))² ],  v Rademacher        (Song et al. 2019)
- ssm-vr: σ² [ vᵀ∇ₓ(vᵀ s(x̃)) + ½ ||s(x̃)||² ],    v ~ N(0, I)         (same paper, variance-reduced)
With E[v vᵀ] = I, vᵀ∇(vᵀ s) is an unbiased estimate of tr ∇s, so both sliced
forms are unbiased for the Fisher objective E[tr ∇s + ½||s||²] at each σ.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Protocol

import torch


class ScoreNet(Protocol):
    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor: ...


@dataclass(frozen=True)
class LossOutput:
    """`loss` is the scalar to minimise; the detached per-sample parts are for logging per σ."""

    loss: torch.Tensor  # scalar, with graph
    per_sample: torch.Tensor  # (n,), detached, already weighted by σ²
    sigma_index: torch.Tensor  # (n,) ladder index used by each sample


LossFn = Callable[[ScoreNet, torch.Tensor, torch.Tensor, torch.Generator | None], LossOutput]


def _perturb(
    x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw σ per sample uniformly from the ladder and return (x̃, z, σ, index)."""
    idx = torch.randint(0, sigmas.shape[0], (x.shape[0],), generator=generator)  # (n,)
    sigma = sigmas.to(x.dtype)[idx]  # (n,)
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype)  # (n, d)
    x_noisy = x + sigma[:, None] * z  # (n, d)
    return x_noisy, z, sigma, idx


def dsm_per_sample(score: torch.Tensor, z: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """The DSM term with λ(σ) = σ², per row: ½ ||σ s(x + σz) + z||². score, z: (n, d); sigma: (n,) or float."""
    sig = sigma[:, None] if isinstance(sigma, torch.Tensor) and sigma.ndim == 1 else sigma
    return 0.5 * (sig * score + z).pow(2).sum(dim=1)


def dsm_loss(
    model: ScoreNet, x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator | None = None
) -> LossOutput:
    """Denoising score matching, λ(σ) = σ²: mean of ½ ||σ s(x + σz, σ) + z||²."""
    x_noisy, z, sigma, idx = _perturb(x, sigmas, generator)
    per = dsm_per_sample(model(x_noisy, sigma), z, sigma)  # (n,)
    return LossOutput(per.mean(), per.detach(), idx)


def _sliced(
    model: ScoreNet,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    generator: torch.Generator | None,
    variance_reduced: bool,
) -> LossOutput:
    x_noisy, _, sigma, idx = _perturb(x, sigmas, generator)
    x_noisy = x_noisy.detach().requires_grad_(True)
    if variance_reduced:
        v = torch.randn(x.shape, generator=generator, dtype=x.dtype)  # (n, d)
    else:  # Rademacher ±1: E[v vᵀ] = I with lower variance than Gaussian
        v = torch.randint(0, 2, x.shape, generator=generator).to(x.dtype) * 2.0 - 1.0
    s = model(x_noisy, sigma)  # (n, d)
    sv = (s * v).sum(dim=1)  # (n,)  vᵀ s
    (grad_sv,) = torch.autograd.grad(sv.sum(), x_noisy, create_graph=True)  # (n, d)  ∇ₓ(vᵀ s) per row
    trace_term = (grad_sv * v).sum(dim=1)  # (n,)  vᵀ ∇ₓ(vᵀ s)
    norm_term = 0.5 * s.pow(2).sum(dim=1) if variance_reduced else 0.5 * sv.pow(2)  # (n,)
    per = sigma.pow(2) * (trace_term + norm_term)  # (n,)
    return LossOutput(per.mean(), per.detach(), idx)


def ssm_loss(
    model: ScoreNet, x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator | None = None
) -> LossOutput:
    """Sliced score matching on x̃ ~ p_σ, one Rademacher projection per sample, λ(σ) = σ²."""
    return _sliced(model, x, sigmas, generator, variance_reduced=False)


def ssm_vr_loss(
    model: ScoreNet, x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator | None = None
) -> LossOutput:
    """Variance-reduced sliced score matching: ½||s||² exact, Gaussian projection for the trace."""
    return _sliced(model, x, sigmas, generator, variance_reduced=True)


OBJECTIVES: dict[str, LossFn] = {"dsm": dsm_loss, "ssm": ssm_loss, "ssm-vr": ssm_vr_loss}


def get_objective(name: str) -> LossFn:
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}") from None


class SigmaLoss(NamedTuple):
    mean: float  # mean of ½||σ s(x̃) + z||² at this σ
    stderr: float  # Monte Carlo standard error of that mean (sample std / √n)


@torch.no_grad()
def dsm_loss_per_sigma(
    model: ScoreNet, x: torch.Tensor, sigma: float, generator: torch.Generator | None = None
) -> SigmaLoss:
    """DSM loss at one fixed σ (λ = σ²) on every row of x, for evaluation and floor checks."""
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype)  # (n, d)
    per = dsm_per_sample(model(x + sigma * z, sigma), z, sigma)  # (n,)
    n = per.shape[0]
    stderr = float(per.std()) / n**0.5 if n > 1 else float("nan")
    return SigmaLoss(float(per.mean()), stderr)
