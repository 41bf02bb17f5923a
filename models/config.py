"""What decides a score model's fit and its walk-forward schedule: plain settings, no torch.

Why apart from models/training.py and models/walk_forward.py (which import torch): a
strategy's parameters are these settings, and the code that only reads, validates or
stores them (option parsing, a sweep's driver planning many runs, the registry) should
not pay for importing torch (~1.2 s and ~180 MB of memory). The names of the objectives, model
targets and forecast methods live here for the same reason; the modules that implement
them hold their tables equal to these (tests/strategies/test_score_cli.py).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from domain.times import MS_PER_DAY
from models.sigmas import DEFAULT_N_SIGMAS, DEFAULT_SIGMA_MIN

OBJECTIVE_NAMES = ("dsm", "ssm", "ssm-vr")  # models.losses.OBJECTIVES implements each
MODEL_TARGETS = ("state", "forecast")
FORECAST_METHODS = ("tweedie", "inpaint")  # models.forecast implements each


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a fit; stored with each checkpoint."""

    objective: str = "dsm"  # key of losses.OBJECTIVES: "dsm", "ssm", "ssm-vr"
    hidden: int = 128  # width of each hidden layer
    depth: int = 3  # number of hidden layers
    n_sigmas: int = DEFAULT_N_SIGMAS  # ladder length L
    sigma_min: float = DEFAULT_SIGMA_MIN  # σ_L
    sigma_max: float | None = None  # σ_1; None = largest pairwise distance in the data
    sigma_max_points: int = 1500  # subsample size for that distance
    lr: float = 1e-3  # Adam learning rate
    batch_size: int = 512
    max_steps: int = 1000  # steps of a first fit (from random init)
    warm_start_steps: int = 200  # steps of a refit from init_state
    ema_decay: float = 0.999  # cap of the EMA decay; below ~9,000 steps the ramp (1+t)/(10+t) is lower
    val_fraction: float = 0.1  # time-ordered tail held back for early stopping; 0 = none
    val_max_rows: int = 4096  # cap on (tail rows × ladder levels) in the validation loss (evenly spaced rows)
    eval_every_steps: int = 50
    patience_evals: int = 5  # stop after this many evals without a better val loss
    seed: int = 0
    threads: int = 1  # torch threads during the fit

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVE_NAMES:
            raise ValueError(f"unknown objective {self.objective!r}; choose one of {sorted(OBJECTIVE_NAMES)}")
        if min(self.hidden, self.depth, self.batch_size, self.eval_every_steps, self.patience_evals, self.threads) < 1:
            raise ValueError("hidden, depth, batch_size, eval_every_steps, patience_evals, threads must be >= 1")
        if self.n_sigmas < 2 or not self.sigma_min > 0:
            raise ValueError(f"need n_sigmas >= 2 and sigma_min > 0, got {self.n_sigmas}, {self.sigma_min}")
        if self.max_steps < 0 or self.warm_start_steps < 0:
            raise ValueError("max_steps and warm_start_steps must be >= 0")
        if not (0.0 <= self.val_fraction < 1.0) or not (0.0 <= self.ema_decay < 1.0) or not self.lr > 0:
            raise ValueError("need 0 <= val_fraction < 1, 0 <= ema_decay < 1, lr > 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        return cls(**d)


@dataclass(frozen=True)
class WalkForwardConfig:
    """Fold schedule, model target and how each fold's signal or forecast is calibrated."""

    train_days: float = 365.0  # length of the rolling training window
    retrain_days: float = 30.0  # length of the block traded with one frozen model
    signal_sigma: float = 0.6  # noise level whose score drives the state signal (nearest ladder level)
    direction_features: tuple[int, ...] = (0, 1, 2)  # score components summed into the signal (returns 1/4/24)
    threshold_quantile: float = 0.99  # |signal| quantile on the training window that gates entries
    min_train_rows: int = 200  # fewer valid feature rows than this: no model for that fold
    sample_check_samples: int = 128  # annealed-Langevin draws per fold (0 = skip the check)
    sample_check_steps: int = 10  # Langevin steps per σ level in the check
    sample_check_every: int = 4  # run the check on folds 0, k, 2k, ... (it cost ~10% of a walk-forward)
    # α_i = ratio·σ_i². 0.1 with 10 steps left chains at std ~7 (SWD 6.0 vs 0.21 between data
    # halves, fold 0 of the BTC 1h file); 0.5 with 10 steps gave SWD 0.26 in 0.1 s.
    sample_check_step_ratio: float = 0.5
    warm_start: bool = True  # start each refit from the previous fold's weights
    # Default chosen by bench/model_eval.py on 2018-08 → 2021-12 only (highest after-fee Sharpe with ≥ 100 trades):
    # forecast, h = 24, Tweedie at σ = 0.3, margin 0.5 % (Sharpe -0.16 vs -0.73 for the state signal; both lose).
    model_target: str = "forecast"  # "state": score of today's features; "forecast": score of (features, r_{t→t+h})
    horizon_bars: int = 24  # forecast horizon h in bars (forecast target only)
    forecast_method: str = "tweedie"  # "tweedie" fixed point or "inpaint" (annealed-Langevin inpainting)
    forecast_sigma: float = 0.3  # σ of the Tweedie fixed point
    forecast_iterations: int = 5  # Tweedie fixed-point iterations
    interval: float = 0.8  # central probability of the reported forecast interval
    inpaint_samples: int = 64  # Langevin samples per bar (inpaint method)
    ensemble: int = 1  # seeds trained per fold; their signals/forecasts are averaged
    # 600 + 60 warm steps: 2.4x fewer than 1,000 + 150 for the same IC on 2018-08 → 2021-12 (0.069 vs 0.071, 3 seeds)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(max_steps=600, warm_start_steps=60))

    def __post_init__(self) -> None:
        if not (self.train_days > 0 and self.retrain_days > 0):
            raise ValueError("train_days and retrain_days must be positive")
        if not (0.0 < self.threshold_quantile < 1.0):
            raise ValueError(f"threshold_quantile must be in (0, 1), got {self.threshold_quantile}")
        if not self.signal_sigma > 0 or not self.forecast_sigma > 0:
            raise ValueError("signal_sigma and forecast_sigma must be positive")
        if self.model_target not in MODEL_TARGETS:
            raise ValueError(f"model_target must be one of {MODEL_TARGETS}, got {self.model_target!r}")
        if self.forecast_method not in FORECAST_METHODS:
            raise ValueError(f"forecast_method must be one of {FORECAST_METHODS}, got {self.forecast_method!r}")
        if self.horizon_bars < 1 or self.forecast_iterations < 1 or self.inpaint_samples < 2 or self.ensemble < 1:
            raise ValueError("horizon_bars, forecast_iterations, ensemble must be >= 1 and inpaint_samples >= 2")
        if not 0.0 < self.interval < 1.0:
            raise ValueError(f"interval must be in (0, 1), got {self.interval}")

    @property
    def train_ms(self) -> int:
        return int(round(self.train_days * MS_PER_DAY))

    @property
    def retrain_ms(self) -> int:
        return int(round(self.retrain_days * MS_PER_DAY))

    @property
    def is_forecast(self) -> bool:
        return self.model_target == "forecast"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["direction_features"] = list(self.direction_features)
        return d
