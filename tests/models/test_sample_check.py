from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.network import ScoreMLP
from models.sample_check import check_samples, sliced_wasserstein
from models.training import TrainResult
from tests.models.analytic import GAUSSIAN


def test_sliced_wasserstein_of_a_shift_is_its_length_over_sqrt_d() -> None:
    """For B = A + δ, each projection moves by θ·δ, and E_θ[(θ·δ)²] = ||δ||²/d for unit θ."""
    a = np.random.default_rng(0).standard_normal((2000, 4))
    delta = np.array([3.0, -1.0, 2.0, 0.5])
    assert sliced_wasserstein(a, a) == 0.0
    got = sliced_wasserstein(a, a + delta, n_projections=512, seed=1)
    assert got == pytest.approx(np.linalg.norm(delta) / 2.0, rel=0.1)
    assert sliced_wasserstein(a, a + delta, seed=3) == sliced_wasserstein(a, a + delta, seed=3)


def test_samples_of_a_trained_model_match_its_data(gaussian_dsm: TrainResult, gaussian_data: np.ndarray) -> None:
    check = check_samples(gaussian_dsm.model, gaussian_dsm.sigmas, gaussian_data[:5000], n_samples=1000, seed=0)
    print(json.dumps({k: (np.round(v, 3).tolist() if isinstance(v, (list, float)) else v)
                      for k, v in check.to_dict().items()}))
    np.testing.assert_allclose(check.sample_mean, GAUSSIAN.mu, atol=0.15)
    np.testing.assert_allclose(check.sample_std, GAUSSIAN.tau, rtol=0.08)
    assert check.swd < 3.0 * check.swd_reference
    assert json.loads(json.dumps(check.to_dict())) == check.to_dict()


def test_an_untrained_model_fails_the_check(gaussian_dsm: TrainResult, gaussian_data: np.ndarray) -> None:
    torch.manual_seed(0)
    untrained = ScoreMLP(2, 64, 3).eval()
    check = check_samples(untrained, gaussian_dsm.sigmas, gaussian_data[:5000], n_samples=500, seed=0)
    print(f"untrained: swd {check.swd:.3f} vs reference {check.swd_reference:.3f}")
    assert check.swd > 5.0 * check.swd_reference


def test_diverged_samples_make_the_distance_infinite(gaussian_data: np.ndarray) -> None:
    class Exploding(ScoreMLP):
        def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
            return torch.full_like(x, float("nan"))

    check = check_samples(Exploding(2, 8, 1), np.array([5.0, 1.0, 0.1]), gaussian_data[:500], n_samples=50,
                          steps_per_sigma=5, seed=0)
    assert check.n_diverged == 50 and check.swd == float("inf")
