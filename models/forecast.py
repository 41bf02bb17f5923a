"""A forecast of the future return from a score model of the joint vector (features_t, r_{t→t+h}).

Target (matches a trade that fills at the next open and exits h bars later):
    y_t = ln(O_{t+1+h} / O_{t+1})
so a training row t needs bar t+1+h inside the window: the last h+1 rows of
every window have no target and are dropped (no window-end leakage).

p(y | x) from the joint score s(x, y; σ), with x standardised and clamped:
- ``tweedie``: the fixed point y ← y + σ²·s_y(x, y; σ) from y = 0 (a few
  iterations at one middle σ). Cheap, ranks better than sampling (prototype);
  its interval comes from the training window's residuals, scaled by the
  current 24-bar volatility.
- ``inpaint``: annealed-Langevin inpainting (models/samplers.py) with the
  floored step; the mean and quantiles are those of the samples.
Both work on many rows at once; row i's result depends on row i only (its
noise is drawn from a generator keyed by the row's key), so a fold scored in one
batch equals the same rows queried one by one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.checkpoint import ScoreModel
from models.runtime import torch_threads
from models.samplers import inpaint_langevin



def forecast_targets(opens: np.ndarray, horizon: int) -> np.ndarray:
    """y_j = ln(O_{j+1+h} / O_{j+1}) for every row j; NaN for the last h+1 rows (their future is unknown)."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1 bar, got {horizon}")
    opens = np.asarray(opens, dtype=np.float64)
    y = np.full(len(opens), np.nan)
    if len(opens) > horizon + 1:
        y[: len(opens) - horizon - 1] = np.log(opens[horizon + 1:] / opens[1: len(opens) - horizon])
    return y


@dataclass(frozen=True)
class InpaintSettings:
    """Annealed-Langevin inpainting: ladder from sigma_max down to the model's smallest σ."""

    n_samples: int = 64
    n_levels: int = 10
    steps_per_sigma: int = 10
    sigma_max: float = 5.0
    step_floor: float = 0.3  # α = max(σ, floor)²: the unfloored step biased means to 0.72-0.85 × truth
    chunk_rows: int = 64


def tweedie_forecast(model: ScoreModel, x_std: np.ndarray, sigma: float, iterations: int,
                     float32: bool = False) -> np.ndarray:
    """Standardised forecast of the last coordinate: y ← y + σ² s_y(x, y; σ) from y = 0, x clamped. (n,)"""
    x = np.asarray(x_std, dtype=np.float64)
    joint = np.concatenate([x, np.zeros((x.shape[0], 1))], axis=1)  # (n, d+1)
    score = model.score32 if float32 else model.score
    for _ in range(iterations):
        joint[:, -1] = joint[:, -1] + sigma**2 * score(joint, sigma)[:, -1]
    return joint[:, -1].copy()


def inpaint_samples(model: ScoreModel, x_std: np.ndarray, keys: np.ndarray, seed: int,
                    settings: InpaintSettings = InpaintSettings()) -> np.ndarray:
    """Standardised samples of the last coordinate given x (n, d): (n, n_samples).

    Row i's noise comes from a generator seeded by (seed, keys[i]) (its bar time),
    so the samples of a row do not depend on the other rows in the call.
    """
    x = np.asarray(x_std, dtype=np.float64)
    keys = np.asarray(keys, dtype=np.int64)
    s_min = float(min(model.sigmas))
    levels = np.geomspace(max(settings.sigma_max, 2 * s_min), s_min, settings.n_levels)
    n_steps = settings.n_levels * settings.steps_per_sigma
    dim = x.shape[1] + 1
    mask = torch.zeros(dim, dtype=torch.bool)
    mask[:-1] = True
    out = np.empty((x.shape[0], settings.n_samples))
    with torch_threads(1):
        for lo in range(0, x.shape[0], settings.chunk_rows):
            rows = range(lo, min(lo + settings.chunk_rows, x.shape[0]))
            noise, init = [], []
            for i in rows:
                rng = np.random.default_rng([seed, int(keys[i]) & 0x7FFFFFFFFFFFFFFF])
                init.append(rng.standard_normal((settings.n_samples, dim)) * levels[0])
                noise.append(rng.standard_normal((n_steps, settings.n_samples, dim)))
            known = np.repeat(np.concatenate([x[list(rows)], np.zeros((len(rows), 1))], axis=1),
                              settings.n_samples, axis=0)  # (m·S, dim)
            z = torch.as_tensor(np.concatenate(noise, axis=1), dtype=torch.float32)  # (T, m·S, dim)
            x0 = torch.as_tensor(np.concatenate(init, axis=0), dtype=torch.float32)
            samples = inpaint_langevin(model.network, torch.as_tensor(known, dtype=torch.float32), mask, levels,
                                       settings.steps_per_sigma, z, x0, step_floor=settings.step_floor)
            out[lo: lo + len(rows)] = samples[:, -1].double().numpy().reshape(len(rows), settings.n_samples)
    return out
