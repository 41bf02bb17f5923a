"""Objectives against the Gaussian's closed forms (see analytic.py for the derivations).

Per σ, with λ(σ) = σ², the DSM loss ½ E||σ s(x̃) + z||² has the floor
    F(σ) = (d/2) · τ² / (τ² + σ²),
reached only by the true score, and for any s the excess is exactly
    loss - F = ½ σ² E||s(x̃) - ∇ log p_σ(x̃)||²  ≥ 0.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.losses import OBJECTIVES, dsm_loss, dsm_loss_per_sigma, get_objective
from models.network import ScoreMLP
from models.training import TrainConfig, TrainResult, train_score_model
from tests.models.analytic import GAUSSIAN, relative_error

N_EVAL = 50_000  # fresh evaluation points per σ: MC standard error of the loss ≤ 0.0045
MC_SIGMAS = 4.0  # a loss below floor - 4 standard errors fails (false alarm rate ~3e-5 per σ)


def fresh_gaussian(n: int, seed: int) -> torch.Tensor:
    return torch.as_tensor(GAUSSIAN.sample(n, np.random.default_rng(seed)), dtype=torch.float32)


@pytest.mark.parametrize("sigma", [0.02, 0.3, 1.5, 8.0])
def test_dsm_floor_formula_is_reached_by_the_exact_score_only(sigma: float) -> None:
    """Checks the floor itself: the exact score sits on it, and a 20%-shrunk score sits above it
    by the predicted excess ½ σ² (0.2)² E||s*||² = ½ σ² · 0.04 · d / (τ² + σ²)."""
    n = 200_000  # closed forms only, so cheap: the paired excess at σ = 1.5 then has se ≈ 3e-4
    x = fresh_gaussian(n, seed=10)
    exact = dsm_loss_per_sigma(GAUSSIAN.score, x, sigma, torch.Generator().manual_seed(1))
    floor = GAUSSIAN.dsm_floor(sigma)
    predicted_se = GAUSSIAN.dsm_floor_sample_std(sigma) / np.sqrt(n)
    assert exact.stderr == pytest.approx(predicted_se, rel=0.05)
    assert abs(exact.mean - floor) < MC_SIGMAS * exact.stderr
    # paired (same x, same z, float64) so the excess is measured without the loss's own noise
    xd = x.double()
    z = torch.randn(xd.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x_noisy = xd + sigma * z
    per_exact = 0.5 * (sigma * GAUSSIAN.score(x_noisy, sigma) + z).pow(2).sum(1)
    per_shrunk = 0.5 * (sigma * 0.8 * GAUSSIAN.score(x_noisy, sigma) + z).pow(2).sum(1)
    diff = per_shrunk - per_exact
    diff_se = float(diff.std()) / np.sqrt(n)
    expected_excess = 0.5 * sigma**2 * 0.04 * GAUSSIAN.d / (GAUSSIAN.tau**2 + sigma**2)
    print(f"σ={sigma}: excess of 0.8·s* {float(diff.mean()):.2e} (predicted {expected_excess:.2e}, se {diff_se:.1e})")
    assert abs(float(diff.mean()) - expected_excess) < MC_SIGMAS * diff_se  # at σ ≥ 0.3 this excludes 0


def test_trained_dsm_loss_sits_just_above_the_floor_at_every_sigma(gaussian_dsm: TrainResult) -> None:
    gen = torch.Generator().manual_seed(2)
    x = fresh_gaussian(N_EVAL, seed=11)
    rows = []
    for sigma in gaussian_dsm.sigmas.tolist():
        got = dsm_loss_per_sigma(gaussian_dsm.model, x, sigma, gen)
        floor = GAUSSIAN.dsm_floor(sigma)
        rows.append((sigma, got.mean, floor, got.stderr))
        print(f"σ={sigma:7.3f} loss={got.mean:.4f} floor={floor:.4f} excess={got.mean - floor:+.4f} se={got.stderr:.4f}")
        assert got.mean >= floor - MC_SIGMAS * got.stderr  # never below the floor
        assert got.mean <= floor + 0.01 + MC_SIGMAS * got.stderr  # and close to it: excess ≤ 0.01 (~1% of d/2)


def test_trained_dsm_score_matches_the_gaussian_score(gaussian_dsm: TrainResult) -> None:
    """Relative error (rms over x̃ ~ p_σ) ≤ 0.12 at every σ ≥ 0.1, and ≤ 0.8 below.

    Below σ ≈ 0.1 DSM is noise-limited: the net outputs σ·s, whose target is only
    ~σ·|s| (0.02 at σ = 0.02) against unit-variance noise z in each sample, so an
    absolute error of ~0.01 in σ·s (measured: 0.006-0.010) is already ~50% relative.
    The bound 0.8 still fails a score no better than zero (relative error 1).
    """
    gen = torch.Generator().manual_seed(3)
    x = fresh_gaussian(20_000, seed=12)
    for sigma in gaussian_dsm.sigmas.tolist():
        x_noisy = x + sigma * torch.randn(x.shape, generator=gen)
        with torch.no_grad():
            learned = gaussian_dsm.model(x_noisy, sigma)
        truth = GAUSSIAN.score(x_noisy.double(), sigma)
        rel = relative_error(learned, truth)
        scaled_rms = float((sigma * (learned.double() - truth)).pow(2).sum(1).mean().sqrt())
        print(f"σ={sigma:7.3f} relative error={rel:.3f}  rms error of σ·s={scaled_rms:.4f}")
        assert rel <= (0.12 if sigma >= 0.1 else 0.8)


@pytest.mark.parametrize("objective", ["ssm-vr", "ssm"])
def test_sliced_score_matching_recovers_the_gaussian_score(gaussian_data: np.ndarray, objective: str) -> None:
    """Relative error ≤ 0.25 at every σ in 10.7 → 0.1 after 1,500 steps (measured ≤ 0.19).
    A dropped ½ or a sign error in the trace term would give ≥ 0.5."""
    config = TrainConfig(objective=objective, hidden=64, depth=3, n_sigmas=8, sigma_min=0.1, batch_size=512,
                         max_steps=1500, eval_every_steps=500, patience_evals=100, seed=0)
    result = train_score_model(gaussian_data, config)
    gen = torch.Generator().manual_seed(4)
    x = fresh_gaussian(20_000, seed=13)
    worst = 0.0
    for sigma in result.sigmas.tolist():
        x_noisy = x + sigma * torch.randn(x.shape, generator=gen)
        with torch.no_grad():
            rel = relative_error(result.model(x_noisy, sigma), GAUSSIAN.score(x_noisy.double(), sigma))
        worst = max(worst, rel)
        print(f"{objective} σ={sigma:7.3f} relative error={rel:.3f}")
    print(f"{objective}: {result.ms_per_step:.2f} ms/step, worst relative error {worst:.3f}")
    assert worst <= 0.25


def test_sliced_objectives_are_unbiased_for_the_fisher_objective() -> None:
    """With the exact score, E[tr ∇s + ½||s||²] = -½ E||s*||²; for the Gaussian at σ:
    tr ∇s* = -d/(τ²+σ²), E||s*||² = d/(τ²+σ²), so the σ²-weighted value is -(d/2) σ²/(τ²+σ²)."""

    class Exact(torch.nn.Module):
        def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            return -(x - torch.tensor(GAUSSIAN.mu, dtype=x.dtype)) / (GAUSSIAN.tau**2 + sigma[:, None] ** 2)

    sigma = 0.7
    sigmas = torch.tensor([sigma], dtype=torch.float64)
    x = fresh_gaussian(200_000, seed=14).double()
    target = -0.5 * GAUSSIAN.d * sigma**2 / (GAUSSIAN.tau**2 + sigma**2)
    for name in ("ssm", "ssm-vr"):
        out = OBJECTIVES[name](Exact(), x, sigmas, torch.Generator().manual_seed(5))
        se = float(out.per_sample.std()) / np.sqrt(x.shape[0])
        value = out.loss.detach().item()
        print(f"{name}: {value:.4f} vs {target:.4f} (se {se:.4f})")
        assert abs(value - target) < MC_SIGMAS * se


def test_objectives_share_one_signature_and_unknown_names_raise() -> None:
    torch.manual_seed(0)
    model = ScoreMLP(2, 16, 2)
    x = torch.randn(32, 2)
    sigmas = torch.tensor([2.0, 0.5, 0.1])
    for name, fn in OBJECTIVES.items():
        out = fn(model, x, sigmas, torch.Generator().manual_seed(0))
        assert out.loss.ndim == 0 and out.loss.requires_grad, name
        assert out.per_sample.shape == (32,) and out.sigma_index.shape == (32,)
    assert set(OBJECTIVES) == {"dsm", "ssm", "ssm-vr"}
    assert get_objective("dsm") is dsm_loss
    with pytest.raises(ValueError, match="unknown objective"):
        get_objective("nope")
