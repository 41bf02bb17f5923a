"""Samplers and Tweedie against closed forms: a Gaussian, and the 2-D mixture
0.2·N((-5,-5), I) + 0.8·N((5,5), I) whose modes are ~14 apart (density between them ~e^-49)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.samplers import annealed_langevin, langevin, tweedie_denoise
from models.sigmas import geometric_sigmas, sigma_max_from_data
from models.training import TrainResult
from tests.models.analytic import GAUSSIAN, MIXTURE, relative_error, small_mode_share

N_SAMPLES = 2000  # share estimate has se sqrt(0.2·0.8/2000) ≈ 0.009, so ±0.05 is > 5 se


def test_mixture_score_helper_is_the_gradient_of_its_log_density() -> None:
    """The 'truth' itself: the hand-written mixture score equals autograd of log p_σ."""
    x = torch.as_tensor(MIXTURE.sample(500, np.random.default_rng(0)), dtype=torch.float64)
    x = (x + torch.randn(x.shape, dtype=torch.float64)).requires_grad_(True)  # also points between modes
    for sigma in (0.02, 1.0, 7.0):
        (grad,) = torch.autograd.grad(MIXTURE.log_density(x, sigma).sum(), x)
        torch.testing.assert_close(MIXTURE.score(x.detach(), sigma), grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("sigma", [0.05, 0.7, 4.0])
def test_tweedie_with_exact_score_is_the_posterior_mean(sigma: float) -> None:
    rng = np.random.default_rng(1)
    xg = torch.as_tensor(GAUSSIAN.sample(1000, rng), dtype=torch.float64)
    xg_noisy = xg + sigma * torch.randn(xg.shape, dtype=torch.float64)
    torch.testing.assert_close(
        tweedie_denoise(GAUSSIAN.score, xg_noisy, sigma), GAUSSIAN.posterior_mean(xg_noisy, sigma), rtol=1e-12, atol=1e-12
    )
    xm = torch.as_tensor(MIXTURE.sample(1000, rng), dtype=torch.float64)
    xm_noisy = xm + sigma * torch.randn(xm.shape, dtype=torch.float64)
    torch.testing.assert_close(
        tweedie_denoise(MIXTURE.score, xm_noisy, sigma), MIXTURE.posterior_mean(xm_noisy, sigma), rtol=1e-12, atol=1e-12
    )


def test_tweedie_with_learned_score_denoises_almost_as_well_as_the_truth(mixture_dsm: TrainResult) -> None:
    x = torch.as_tensor(MIXTURE.sample(5000, np.random.default_rng(2)), dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    for sigma in mixture_dsm.sigmas.tolist()[3:10]:
        x_noisy = x + sigma * torch.randn(x.shape, generator=gen)
        mse_learned = float((tweedie_denoise(mixture_dsm.model, x_noisy, sigma) - x).pow(2).sum(1).mean())
        mse_exact = float((MIXTURE.posterior_mean(x_noisy.double(), sigma) - x.double()).pow(2).sum(1).mean())
        mse_noisy = float((x_noisy - x).pow(2).sum(1).mean())
        print(f"σ={sigma:6.3f} MSE noisy {mse_noisy:.4f}  exact Tweedie {mse_exact:.4f}  learned Tweedie {mse_learned:.4f}")
        assert mse_learned <= 1.1 * mse_exact + 1e-4


def test_annealed_langevin_step_convention_gives_the_gaussian() -> None:
    """x ← x + α/2·s + √α·z has N(μ, τ² + σ_L²) as its end law; α·s (no ½) would shrink the std by ~√2.

    Needs (ε/σ_L²)·steps_per_sigma ≳ 50 to equilibrate at the levels σ ≈ τ: with 0.1·100 the
    end std is ~8% too wide (the chain is still relaxing when σ drops below τ)."""
    sigmas = geometric_sigmas(12.0, 0.02, 10)
    gen = torch.Generator().manual_seed(3)
    x0 = 12.0 * torch.randn((4000, 2), generator=gen, dtype=torch.float64)
    xs = annealed_langevin(GAUSSIAN.score, x0, sigmas, eps=0.5 * 0.02**2, steps_per_sigma=200, generator=gen)
    std = xs.std(dim=0).numpy()
    print(f"annealed Langevin on N((1,-2), 1.5²): mean {xs.mean(0).numpy()}, std {std}")
    np.testing.assert_allclose(xs.mean(0).numpy(), GAUSSIAN.mu, atol=0.1)
    np.testing.assert_allclose(std, math.sqrt(1.5**2 + 0.02**2), rtol=0.05)


def test_plain_langevin_gets_the_mode_weights_wrong_but_annealed_gets_them_right() -> None:
    data = MIXTURE.sample(5000, np.random.default_rng(4))
    sigma_max = sigma_max_from_data(data)
    sigmas = geometric_sigmas(sigma_max, 0.02, 15)
    gen = torch.Generator().manual_seed(5)
    broad = 16.0 * torch.rand((N_SAMPLES, 2), generator=gen, dtype=torch.float64) - 8.0  # uniform on [-8, 8]²
    plain = langevin(MIXTURE.score, broad, step=0.01, n_steps=1000, generator=gen, sigma=0.02)
    x0 = sigma_max * torch.randn((N_SAMPLES, 2), generator=gen, dtype=torch.float64)
    annealed = annealed_langevin(MIXTURE.score, x0, sigmas, eps=0.5 * 0.02**2, steps_per_sigma=100, generator=gen)
    plain_share, annealed_share = small_mode_share(plain), small_mode_share(annealed)
    print(f"small-mode share (truth 0.2): plain Langevin {plain_share:.3f}, annealed {annealed_share:.3f}")
    assert abs(plain_share - 0.2) > 0.15  # stuck where it started: ~0.5
    assert abs(annealed_share - 0.2) <= 0.05


def test_learned_score_samples_the_mixture_with_annealing(mixture_dsm: TrainResult, mixture_data: np.ndarray) -> None:
    sigmas = mixture_dsm.sigmas
    sigma_min = float(sigmas[-1])
    gen = torch.Generator().manual_seed(6)
    x = torch.as_tensor(mixture_data, dtype=torch.float32)
    x_noisy = x + sigma_min * torch.randn(x.shape, generator=gen)
    with torch.no_grad():
        rel = relative_error(mixture_dsm.model(x_noisy, sigma_min), MIXTURE.score(x_noisy.double(), sigma_min))
    x0 = float(sigmas[0]) * torch.randn((N_SAMPLES, 2), generator=gen)
    samples = annealed_langevin(mixture_dsm.model, x0, sigmas, eps=0.5 * sigma_min**2, steps_per_sigma=100, generator=gen)
    share = small_mode_share(samples)
    print(f"learned DSM ({mixture_dsm.steps_run} steps, {mixture_dsm.ms_per_step:.2f} ms/step): relative score error "
          f"at σ_min={sigma_min} on data {rel:.3f}; annealed small-mode share {share:.3f}")
    assert rel <= 0.2
    assert abs(share - 0.2) <= 0.05


def test_samplers_reject_bad_arguments() -> None:
    x0 = torch.zeros(3, 2)
    with pytest.raises(ValueError):
        annealed_langevin(GAUSSIAN.score, x0, [1.0, 0.0], eps=1e-3, steps_per_sigma=1)
    with pytest.raises(ValueError):
        annealed_langevin(GAUSSIAN.score, x0, [1.0, 0.1], eps=0.0, steps_per_sigma=1)
    with pytest.raises(ValueError):
        langevin(GAUSSIAN.score, x0, step=-1.0, n_steps=1, sigma=0.1)
