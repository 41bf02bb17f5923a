"""Fit a ScoreMLP to one training window: Adam, EMA weights, early stopping on the window's tail.

Early stopping uses the last `val_fraction` of the rows *in time order* (no
shuffling across the cut), so the stopping step is chosen on the most recent
part of the window, the part most like the block that will be traded next.
Refits warm-start from the previous fold's weights with fewer steps
(warm 150-300 steps beat both 1,000 and no refit in the prototype).

Determinism: model init, batches and noise all come from `config.seed`
(a local torch.Generator; the global RNG is forked, not reseeded), and torch
runs on `config.threads` threads, so the same data and config give the same
weights bit for bit.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import torch

from models.losses import dsm_per_sample, get_objective
from models.network import ScoreMLP
from models.optim import FusedAdam
from models.runtime import torch_threads
from models.config import TrainConfig
from models.sigmas import geometric_sigmas, sigma_max_from_data

ProgressFn = Callable[[int, float, "float | None"], None]  # (step, mean train loss, val loss or None)


@dataclass
class TrainResult:
    """The EMA model at its best validation step, with the ladder and the loss record."""

    model: ScoreMLP  # EMA weights, eval mode
    sigmas: np.ndarray  # (L,) descending
    config: TrainConfig
    train_loss_history: list[tuple[int, float]] = field(default_factory=list)  # (step, mean train loss since last eval)
    val_loss_history: list[tuple[int, float]] = field(default_factory=list)  # (step, val DSM loss of the EMA model)
    best_val_loss: float = math.nan  # NaN when there is no validation tail
    best_step: int = 0
    steps_run: int = 0
    warm_started: bool = False
    seconds: float = 0.0

    @property
    def ms_per_step(self) -> float:
        return 1000.0 * self.seconds / max(self.steps_run, 1)


def _as_tensor(x: np.ndarray) -> torch.Tensor:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 4:
        raise ValueError(f"x_train must be 2-D (rows, features) with >= 4 rows, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("x_train has NaN/inf: drop feature warm-up rows and standardise first")
    return torch.as_tensor(arr, dtype=torch.float32)


def _ema_decay(step: int, cap: float) -> float:
    """d_t = min(cap, (1+t)/(10+t)). The ramp is below 0.999 until t ≈ 9,000, so in 150-3,000-step
    fits it, not the cap, sets the averaging (≈0.99 at t = 1,000). A bias-corrected 0.999 EMA
    (which keeps the early, poor iterates in the average) gave 1.3-1.6x larger score errors
    at σ ≥ 0.15 on the 2-D mixture (2,000 steps)."""
    return min(cap, (1.0 + step) / (10.0 + step))


class _ValidationSet:
    """Held-out DSM loss averaged over the whole ladder, with noise fixed once.

    Fixed z (common random numbers) makes successive evaluations differ only by
    the weights, so early stopping reacts to the model, not to fresh noise. It is
    the DSM loss whatever the training objective: DSM is a low-variance,
    no-grad estimate of the same Fisher divergence (up to a constant) that all
    objectives minimise, so it also compares objectives.
    """

    def __init__(self, x_val: torch.Tensor, sigmas: torch.Tensor, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        n_levels = sigmas.shape[0]
        self.sigma = sigmas.repeat_interleave(x_val.shape[0])  # (L*m,)
        self.z = torch.randn((n_levels * x_val.shape[0], x_val.shape[1]), generator=gen)  # (L*m, d)
        self.x_noisy = x_val.repeat(n_levels, 1) + self.sigma[:, None] * self.z  # (L*m, d)

    @torch.no_grad()
    def loss(self, model: ScoreMLP) -> float:
        return float(dsm_per_sample(model(self.x_noisy, self.sigma), self.z, self.sigma).mean())


def train_score_model(
    x_train: np.ndarray,
    config: TrainConfig = TrainConfig(),
    init_state: Mapping[str, torch.Tensor] | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train on standardised features x_train (rows in time order); warm-start from init_state if given.

    Runs config.max_steps (or config.warm_start_steps when warm-starting) Adam
    steps on random minibatches of the first (1 - val_fraction) of the rows,
    with an EMA copy of the weights: ema ← d·ema + (1-d)·θ, d = min(ema_decay, (1+t)/(10+t))
    (the ramp keeps a short fit from being dominated by its initial weights).
    Every eval_every_steps the EMA model's held-out loss is measured; the best
    EMA weights are returned, and training stops after patience_evals evals
    without improvement. The σ ladder is re-measured on every window (warm
    start included); the net is conditioned on log σ, so it carries over.
    """
    t_start = time.perf_counter()
    x_all = _as_tensor(x_train)
    n, dim = x_all.shape
    loss_fn = get_objective(config.objective)
    n_val = int(round(n * config.val_fraction)) if config.val_fraction > 0 else 0
    if n - n_val < 2:
        raise ValueError(f"too few rows ({n}) for val_fraction={config.val_fraction}")
    x_fit, x_val = x_all[: n - n_val], x_all[n - n_val :]

    sigma_max = config.sigma_max
    if sigma_max is None:
        sigma_max = sigma_max_from_data(np.asarray(x_train, dtype=np.float64), config.sigma_max_points, config.seed)
    sigmas_np = geometric_sigmas(sigma_max, config.sigma_min, config.n_sigmas)
    sigmas = torch.as_tensor(sigmas_np, dtype=torch.float32)  # (L,)

    with torch_threads(config.threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # only for the layer init; forked, so the caller's RNG is untouched
        model = ScoreMLP(dim, config.hidden, config.depth)
        if init_state is not None:
            try:
                model.load_state_dict(init_state)
            except RuntimeError as exc:
                raise ValueError(f"init_state does not fit ScoreMLP(dim={dim}, hidden={config.hidden}, "
                                 f"depth={config.depth}): {exc}") from exc
        ema = copy.deepcopy(model).requires_grad_(False)
        ema_params, model_params = list(ema.parameters()), list(model.parameters())
        optimizer = FusedAdam(model.parameters(), lr=config.lr)  # torch's fused Adam, without torch._dynamo
        gen = torch.Generator().manual_seed(config.seed)
        if n_val > 0 and n_val * len(sigmas_np) > config.val_max_rows:  # evenly spaced tail rows
            keep = max(1, config.val_max_rows // len(sigmas_np))
            x_val = x_val[torch.linspace(0, n_val - 1, keep).round().long()]
        validation = _ValidationSet(x_val, sigmas, config.seed + 1) if n_val > 0 else None

        total_steps = config.warm_start_steps if init_state is not None else config.max_steps
        result = TrainResult(model=ema, sigmas=sigmas_np, config=config, warm_started=init_state is not None)
        best_state = copy.deepcopy(ema.state_dict())
        evals_without_gain = 0
        if validation is not None:
            result.best_val_loss = validation.loss(ema)
            result.val_loss_history.append((0, result.best_val_loss))

        batch = min(config.batch_size, x_fit.shape[0])
        order = torch.randperm(x_fit.shape[0], generator=gen)
        cursor = 0
        running, running_n = 0.0, 0
        step = 0
        for step in range(1, total_steps + 1):
            if cursor + batch > order.shape[0]:  # new epoch: reshuffle (drop the ragged end)
                order, cursor = torch.randperm(x_fit.shape[0], generator=gen), 0
            xb = x_fit[order[cursor : cursor + batch]]  # (b, d)
            cursor += batch
            out = loss_fn(model, xb, sigmas, gen)
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            decay = _ema_decay(step, config.ema_decay)
            with torch.no_grad():  # ema ← d·ema + (1-d)·θ, one fused call over all tensors
                torch._foreach_lerp_(ema_params, model_params, 1.0 - decay)
            running += out.loss.detach().item()
            running_n += 1

            if step % config.eval_every_steps == 0 or step == total_steps:
                train_loss = running / running_n
                result.train_loss_history.append((step, train_loss))
                running, running_n = 0.0, 0
                val_loss = None
                if validation is not None:
                    val_loss = validation.loss(ema)
                    result.val_loss_history.append((step, val_loss))
                    if val_loss < result.best_val_loss:
                        result.best_val_loss, result.best_step = val_loss, step
                        best_state = copy.deepcopy(ema.state_dict())
                        evals_without_gain = 0
                    else:
                        evals_without_gain += 1
                if progress is not None:
                    progress(step, train_loss, val_loss)
                if validation is not None and evals_without_gain >= config.patience_evals:
                    break
        if validation is None:
            best_state, result.best_step = copy.deepcopy(ema.state_dict()), step
        result.steps_run = step
        ema.load_state_dict(best_state)
        ema.eval()
    result.seconds = time.perf_counter() - t_start
    return result
