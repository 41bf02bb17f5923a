"""Forecasts from a joint score: inpainting and Tweedie against closed-form conditionals.

Exact scores first (the sampler alone is under test), then a small trained model
(the whole path: training, standardising, Tweedie and inpainting), then the
batch-equals-per-row property the backtest fast path relies on.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.checkpoint import ScoreModel
from models.features import Standardizer
from models.forecast import InpaintSettings, forecast_targets, inpaint_samples, tweedie_forecast
from models.samplers import inpaint_langevin
from models.training import TrainConfig, train_score_model

from .analytic import MixtureTruth

RHO = 0.6
COV = torch.tensor([[1.0, RHO], [RHO, 1.0]], dtype=torch.float64)
LEVELS = np.geomspace(5.0, 0.02, 10)  # the prototype's ladder: 10 levels x 10 steps


def gaussian_score(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Exact score of N(0, Σ) convolved with N(0, σ² I): -(Σ + σ² I)⁻¹ x."""
    return -x @ torch.linalg.inv(COV + sigma**2 * torch.eye(2, dtype=COV.dtype))


def run_inpaint(score_fn, x_known: float, n: int, seed: int, step_floor: float = 0.3) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    known = torch.zeros((n, 2), dtype=torch.float64)
    known[:, 0] = x_known
    noise = torch.randn((len(LEVELS) * 10, n, 2), generator=gen, dtype=torch.float64)
    init = torch.randn((n, 2), generator=gen, dtype=torch.float64) * LEVELS[0]
    out = inpaint_langevin(score_fn, known, torch.tensor([True, False]), LEVELS, 10, noise, init,
                           step_floor=step_floor)
    assert torch.all(out[:, 0] == x_known)  # the known coordinate comes back clean
    return out[:, 1].numpy()


@pytest.mark.parametrize("x_known", [-2.0, 0.0, 1.5])
def test_inpainting_a_gaussian_gives_the_exact_conditional(x_known: float) -> None:
    n = 4000
    y = run_inpaint(gaussian_score, x_known, n, seed=1)
    mean, var = RHO * x_known, 1 - RHO**2  # E[y|x] = ρx, Var = 1 - ρ² = 0.64
    se_mean = math.sqrt(var / n)
    se_var = var * math.sqrt(2 / (n - 1))
    print(f"x={x_known}: mean {y.mean():.3f} (truth {mean:.3f}), var {y.var():.3f} (truth {var:.3f})")
    assert abs(y.mean() - mean) < 4 * se_mean + 0.02
    assert abs(y.var() - var) < 4 * se_var + 0.02


def test_the_unfloored_step_is_biased_which_is_why_the_floor_exists() -> None:
    """α ∝ σ² (floor 0) stops moving y at small σ: the conditional mean comes out shrunk toward 0."""
    y = run_inpaint(gaussian_score, 2.0, 4000, seed=2, step_floor=0.0)
    assert y.mean() < 0.92 * RHO * 2.0


def test_inpainting_a_mixture_recovers_the_conditional_mode_weights() -> None:
    """Two modes in y (3 component-stds apart) whose weights given x differ from the prior.

    Checked two ways: the average exact responsibility of the samples, E[p(k | x0, y)], equals
    p(k | x0); and the share of samples below 0 equals Σ_k p(k | x0) Φ(-μ_ky / s).
    Limitation (measured, not asserted): with modes far apart (6 stds in y) the replacement
    sampler's re-noised x blurs the evidence at the level where y picks its mode, and the
    weights drift toward the prior (0.39 for an exact 0.83).
    """
    mix = MixtureTruth(weights=(0.3, 0.7), means=((-1.0, -1.5), (1.0, 1.5)), comp_std=1.0)
    x0 = -0.3
    like = np.array([w * math.exp(-0.5 * (x0 - m[0]) ** 2) for w, m in zip(mix.weights, mix.means)])
    w_low = like[0] / like.sum()  # exact p(component 1 | x = x0) ≈ 0.44 (prior 0.3)
    n = 4000
    y = run_inpaint(mix.score, x0, n, seed=3)
    pts = torch.as_tensor(np.stack([np.full(n, x0), y], axis=1))
    resp = float(mix.responsibilities(pts, 0.0)[:, 0].mean())
    p_below = w_low * 0.5 * math.erfc(-1.5 / math.sqrt(2)) + (1 - w_low) * 0.5 * math.erfc(1.5 / math.sqrt(2))
    share = float(np.mean(y < 0))
    print(f"mean responsibility {resp:.3f}, exact {w_low:.3f}; share y<0 {share:.3f}, exact {p_below:.3f}")
    assert abs(resp - w_low) < 0.03
    assert abs(share - p_below) < 4 * math.sqrt(p_below * (1 - p_below) / n) + 0.02


def test_forecast_targets_drop_the_last_h_plus_one_rows() -> None:
    opens = np.array([100.0, 101.0, 103.0, 102.0, 105.0, 104.0])
    y = forecast_targets(opens, 2)
    assert np.allclose(y[:3], np.log([opens[3] / opens[1], opens[4] / opens[2], opens[5] / opens[3]]))
    assert np.isnan(y[3:]).all()  # rows 3..5 would need O[6..8], beyond the window


@pytest.fixture(scope="module")
def trained_joint() -> ScoreModel:
    """A small joint model of (x, y) with y = ρx + √(1-ρ²) ε, standardised like a fold."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(8000)
    data = np.stack([x, RHO * x + math.sqrt(1 - RHO**2) * rng.standard_normal(8000)], axis=1)
    st = Standardizer.fit(data)
    cfg = TrainConfig(hidden=64, depth=3, n_sigmas=10, sigma_min=0.02, max_steps=1500, batch_size=512,
                      eval_every_steps=100, patience_evals=100, seed=0)
    result = train_score_model(st.transform(data), cfg)
    return ScoreModel(result.model, result.sigmas, st)


def test_a_trained_joint_model_forecasts_the_conditional_mean(trained_joint: ScoreModel) -> None:
    xs = np.array([[-1.5], [0.0], [1.5]])
    x_std = trained_joint.standardizer.transform(np.concatenate([xs, np.zeros((3, 1))], axis=1))[:, :1]
    tw = tweedie_forecast(trained_joint, x_std, 0.3, 10)
    samples = inpaint_samples(trained_joint, x_std, np.arange(3), seed=0,
                              settings=InpaintSettings(n_samples=512, chunk_rows=3))
    truth = RHO * x_std[:, 0]
    print(f"tweedie {tw}, inpaint mean {samples.mean(1)}, truth {truth}")
    # A trained model's error is ~0.1-0.25 std at this size (the prototype saw -0.10 at x=0 on the
    # same Gaussian): order, slope and rough size are asserted, not the exact conditional.
    for forecast in (tw, samples.mean(1)):
        assert np.all(np.diff(forecast) > 0)
        slope = (forecast[2] - forecast[0]) / (truth[2] - truth[0])
        assert 0.5 < slope < 1.2, slope
        assert np.max(np.abs(forecast - truth)) < 0.35
    assert abs(samples[1].std() - math.sqrt(1 - RHO**2)) < 0.2


def test_batch_forecast_equals_per_row_queries(trained_joint: ScoreModel) -> None:
    x_std = np.linspace(-2, 2, 7)[:, None]
    keys = np.arange(7) * 3_600_000
    settings = InpaintSettings(n_samples=16, n_levels=4, steps_per_sigma=3, chunk_rows=4)
    batch = inpaint_samples(trained_joint, x_std, keys, seed=5, settings=settings)
    rows = np.vstack([inpaint_samples(trained_joint, x_std[i:i + 1], keys[i:i + 1], seed=5, settings=settings)
                      for i in range(7)])
    np.testing.assert_allclose(batch, rows, rtol=1e-5, atol=1e-5)
    tw = tweedie_forecast(trained_joint, x_std, 1.0, 5)
    tw_rows = np.array([tweedie_forecast(trained_joint, x_std[i:i + 1], 1.0, 5)[0] for i in range(7)])
    np.testing.assert_allclose(tw, tw_rows, rtol=1e-12, atol=1e-12)
