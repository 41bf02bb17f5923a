"""Walk-forward model fitting: one frozen model per trading block, fitted on the window before it.

Schedule (time-based, so a backtest and a paper run that see the same bars
retrain at the same bars): the first fold starts once ``train_days`` of history
have been seen, at ``anchor = first_bar_ts + train_ms``; fold k trades bars with
open time in [anchor + k·retrain_ms, anchor + (k+1)·retrain_ms). Its model is
fitted at the close of the first bar of that block, on the feature rows of bars
with open time in (bar_ts - train_ms, bar_ts] — all closed, so no lookahead.
Normalisation, σ ladder, threshold and the unusualness reference all come from
that window only.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from models.checkpoint import ScoreModel, checkpoint_from_bytes, checkpoint_to_bytes
from models.features import FeatureSpec, Standardizer
from models.sample_check import check_samples
from models.training import TrainConfig, train_score_model

log = logging.getLogger(__name__)
MS_PER_DAY = 86_400_000


@dataclass(frozen=True)
class WalkForwardConfig:
    """Fold schedule and how each fold's signal is calibrated."""

    train_days: float = 365.0  # length of the rolling training window
    retrain_days: float = 30.0  # length of the block traded with one frozen model
    signal_sigma: float = 0.6  # noise level whose score drives the signal (nearest ladder level)
    direction_features: tuple[int, ...] = (0, 1, 2)  # score components summed into the signal (returns 1/4/24)
    threshold_quantile: float = 0.99  # |signal| quantile on the training window that gates entries
    min_train_rows: int = 200  # fewer valid feature rows than this: no model for that fold
    sample_check_samples: int = 128  # annealed-Langevin draws per fold (0 = skip the check)
    sample_check_steps: int = 10  # Langevin steps per σ level in the check
    # α_i = ratio·σ_i². 0.1 with 10 steps left chains at std ~7 (SWD 6.0 vs 0.21 between data
    # halves, fold 0 of the BTC 1h file); 0.5 with 10 steps gave SWD 0.26 in 0.1 s.
    sample_check_step_ratio: float = 0.5
    warm_start: bool = True  # start each refit from the previous fold's weights
    train: TrainConfig = field(default_factory=lambda: TrainConfig(warm_start_steps=150))

    def __post_init__(self) -> None:
        if not (self.train_days > 0 and self.retrain_days > 0):
            raise ValueError("train_days and retrain_days must be positive")
        if not (0.0 < self.threshold_quantile < 1.0):
            raise ValueError(f"threshold_quantile must be in (0, 1), got {self.threshold_quantile}")
        if not self.signal_sigma > 0:
            raise ValueError("signal_sigma must be positive")

    @property
    def train_ms(self) -> int:
        return int(round(self.train_days * MS_PER_DAY))

    @property
    def retrain_ms(self) -> int:
        return int(round(self.retrain_days * MS_PER_DAY))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["direction_features"] = list(self.direction_features)
        return d


@dataclass
class FoldModel:
    """A fold's frozen model and everything calibrated with it on its training window."""

    fold_index: int
    model: ScoreModel
    signal_sigma: float
    direction_features: tuple[int, ...]
    threshold: float
    train_norms_sorted: np.ndarray  # ‖s‖ over the training window, for the unusualness quantile
    train_start_ts: int
    train_end_ts: int
    trade_start_ts: int
    trade_end_ts: int
    train_loss: float | None
    val_loss: float | None
    steps: int
    seconds: float
    losses: dict[str, Any]
    sample_check: dict[str, Any] | None
    checkpoint: bytes

    def signal(self, features_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(signal, ‖s‖) for raw feature rows (n, d) or one row (d,).

        signal = Σ_k s_k over the return components: positive when returns sit
        below where the model expects them (reversion up) → long.
        """
        s = self.model.score_features(features_raw, self.signal_sigma)
        idx = list(self.direction_features)
        return s[..., idx].sum(axis=-1), np.sqrt((s * s).sum(axis=-1))

    def unusualness(self, norm: float) -> float:
        """Quantile of ‖s‖ within the training window (0 = most typical, 1 = beyond anything seen)."""
        ref = self.train_norms_sorted
        return float(np.searchsorted(ref, norm, side="right")) / len(ref)


def nearest_sigma(sigmas: np.ndarray, target: float) -> float:
    """The ladder level closest to ``target`` on a log scale."""
    return float(sigmas[int(np.argmin(np.abs(np.log(sigmas) - math.log(target))))])


def fit_fold(fold_index: int, rows_raw: np.ndarray, train_start_ts: int, train_end_ts: int,
             trade_start_ts: int, trade_end_ts: int, config: WalkForwardConfig, spec: FeatureSpec,
             previous: FoldModel | None = None) -> FoldModel:
    """Fit one fold on its window's raw feature rows (time order, warm-up rows already dropped)."""
    t0 = time.perf_counter()
    standardizer = Standardizer.fit(rows_raw, names=spec.names)
    x_std = standardizer.transform(rows_raw)
    train_cfg = config.train
    init_state = previous.model.network.state_dict() if (previous is not None and config.warm_start) else None
    result = train_score_model(x_std, train_cfg, init_state=init_state)
    model = ScoreModel(result.model, result.sigmas, standardizer)
    sigma = nearest_sigma(result.sigmas, config.signal_sigma)
    s = model.score(x_std, sigma)
    idx = list(config.direction_features)
    signal = s[:, idx].sum(axis=1)
    threshold = float(np.quantile(np.abs(signal), config.threshold_quantile))
    norms = np.sort(np.sqrt((s * s).sum(axis=1)))
    check = None
    if config.sample_check_samples > 0:
        check = check_samples(result.model, result.sigmas, x_std, n_samples=config.sample_check_samples,
                              steps_per_sigma=config.sample_check_steps,
                              step_ratio=config.sample_check_step_ratio, seed=train_cfg.seed,
                              threads=train_cfg.threads).to_dict()
    losses = {"train": result.train_loss_history, "val": result.val_loss_history,
              "best_step": result.best_step, "warm_started": result.warm_started,
              "sigmas": [float(x) for x in result.sigmas], "signal_sigma": sigma}
    train_loss = result.train_loss_history[-1][1] if result.train_loss_history else None
    val_loss = None if math.isnan(result.best_val_loss) else float(result.best_val_loss)
    blob = checkpoint_to_bytes(model, config=config.to_dict(), fold_index=fold_index,
                               train_start_ms=train_start_ts, train_end_ms=train_end_ts,
                               extra={"threshold": threshold, "signal_sigma": sigma,
                                      "trade_start_ms": trade_start_ts, "trade_end_ms": trade_end_ts,
                                      "train_norms_sorted": norms.tolist()})
    seconds = time.perf_counter() - t0
    log.info("fold %d: %d rows, %d steps, val loss %s, threshold %.4g, %.2fs", fold_index, len(rows_raw),
             result.steps_run, f"{val_loss:.4f}" if val_loss is not None else "-", threshold, seconds)
    return FoldModel(fold_index, model, sigma, tuple(config.direction_features), threshold, norms,
                     train_start_ts, train_end_ts, trade_start_ts, trade_end_ts, train_loss, val_loss,
                     result.steps_run, seconds, losses, check, blob)


def fold_from_checkpoint(blob: bytes, losses: dict[str, Any] | None = None,
                         sample_check: dict[str, Any] | None = None) -> FoldModel:
    """Rebuild a stored fold (a restart loads it instead of retraining)."""
    ck = checkpoint_from_bytes(blob)
    extra = ck.extra
    return FoldModel(ck.fold_index, ck.model, float(extra["signal_sigma"]),
                     tuple(ck.config.get("direction_features", (0, 1, 2))), float(extra["threshold"]),
                     np.asarray(extra["train_norms_sorted"], dtype=float), ck.train_start_ms, ck.train_end_ms,
                     int(extra["trade_start_ms"]), int(extra["trade_end_ms"]), None, None, 0, 0.0,
                     losses or {}, sample_check, blob)
