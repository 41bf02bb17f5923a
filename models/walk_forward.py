"""Walk-forward model fitting: one frozen model per trading block, fitted on the window before it.

Schedule (time-based, so a backtest and a paper run that see the same bars
retrain at the same bars): the first fold starts once ``train_days`` of history
have been seen, at ``anchor = first_bar_ts + train_ms``; fold k trades bars with
open time in [anchor + k·retrain_ms, anchor + (k+1)·retrain_ms). Its model is
fitted at the close of the first bar of that block, on the feature rows of bars
with open time in (bar_ts - train_ms, bar_ts] — all closed, so no lookahead.
Normalisation, σ ladder, threshold and the unusualness reference all come from
that window only.

``WalkForward.update(ts, row, open)`` runs this loop bar by bar (rolling window,
schedule, gap skipping, fold cache) and returns the fold that starts at that bar.
Two model targets: "state" (the score of today's features; signal = Σ of its
return components) and "forecast" (the score of (features, future return);
signal = the forecast mean, see models/forecast.py). ``ensemble`` > 1 trains
that many seeds per fold and averages their signals and forecasts.
"""
from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from models.checkpoint import ScoreModel, checkpoint_from_bytes, checkpoint_to_bytes
from models.features import FeatureSpec, Standardizer
from models.forecast import InpaintSettings, forecast_targets, inpaint_samples, tweedie_forecast
from domain.records import ModelVersionRecord
from models.sample_check import check_samples
from models.config import TrainConfig, WalkForwardConfig
from models.training import train_score_model

log = logging.getLogger(__name__)




@dataclass(frozen=True)
class FoldCalibration:
    """What a fold calibrated on its training window besides the weights (stored with the checkpoint)."""

    threshold: float  # |signal| quantile on the window (state) or |forecast mean| quantile (forecast)
    signal_sigma: float  # ladder level actually used for the state signal / unusualness
    trade_start_ts: int
    trade_end_ts: int
    train_norms_sorted: tuple[float, ...]  # ‖s‖ over the window, for the unusualness quantile
    model_target: str = "state"
    horizon_bars: int = 0
    residual_quantiles: tuple[float, float] | None = None  # vol-scaled (y - ŷ) quantiles (Tweedie interval)

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "signal_sigma": self.signal_sigma,
                "trade_start_ts": self.trade_start_ts, "trade_end_ts": self.trade_end_ts,
                "train_norms_sorted": list(self.train_norms_sorted), "model_target": self.model_target,
                "horizon_bars": self.horizon_bars,
                "residual_quantiles": None if self.residual_quantiles is None else list(self.residual_quantiles)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FoldCalibration:
        rq = d.get("residual_quantiles")
        return cls(float(d["threshold"]), float(d["signal_sigma"]), int(d["trade_start_ts"]), int(d["trade_end_ts"]),
                   tuple(float(v) for v in d["train_norms_sorted"]), str(d.get("model_target", "state")),
                   int(d.get("horizon_bars", 0)), None if rq is None else (float(rq[0]), float(rq[1])))


@dataclass(frozen=True)
class FoldScores:
    """A fold's outputs for n feature rows, all (n,). Forecast fields are None for the state target."""

    signal: np.ndarray  # state: Σ return components of the score; forecast: the forecast mean
    norm: np.ndarray  # ‖s‖ at the signal σ (unusualness)
    forecast_mean: np.ndarray | None = None  # E[ln(O_{t+1+h}/O_{t+1}) | x_t]
    forecast_low: np.ndarray | None = None  # lower end of the central `interval`
    forecast_high: np.ndarray | None = None

    def row(self, i: int) -> FoldScores:
        pick = (lambda a: None if a is None else a[i:i + 1])
        return FoldScores(self.signal[i:i + 1], self.norm[i:i + 1], pick(self.forecast_mean),
                          pick(self.forecast_low), pick(self.forecast_high))


@dataclass
class FitReport:
    """How a fold's fit went (for the record and the progress bar)."""

    train_loss: float | None
    val_loss: float | None
    steps: int
    seconds: float
    losses: dict[str, Any]
    sample_check: dict[str, Any] | None


@dataclass
class FoldModel:
    """A fold's frozen model(s) and everything calibrated with them on its training window."""

    fold_index: int
    members: list[ScoreModel]  # ensemble members (one by default); outputs are averaged
    calibration: FoldCalibration
    train_start_ts: int
    train_end_ts: int
    fit: FitReport
    checkpoint: bytes
    config: WalkForwardConfig = field(default_factory=WalkForwardConfig)
    _norms: np.ndarray | None = field(default=None, repr=False)
    # Outputs of whole blocks already scored, by the caller's key: a rerun on the same bars (e.g. the
    # report's no-fee rerun) reuses them instead of scoring again. Outputs depend on the rows only.
    block_scores: dict[Any, FoldScores] = field(default_factory=dict, repr=False)

    # Read-only views kept for callers of the first version.
    @property
    def model(self) -> ScoreModel:
        return self.members[0]

    @property
    def threshold(self) -> float:
        return self.calibration.threshold

    @property
    def signal_sigma(self) -> float:
        return self.calibration.signal_sigma

    @property
    def trade_start_ts(self) -> int:
        return self.calibration.trade_start_ts

    @property
    def trade_end_ts(self) -> int:
        return self.calibration.trade_end_ts

    @property
    def train_norms_sorted(self) -> np.ndarray:
        if self._norms is None:
            self._norms = np.asarray(self.calibration.train_norms_sorted, dtype=float)
        return self._norms

    @property
    def train_loss(self) -> float | None:
        return self.fit.train_loss

    @property
    def val_loss(self) -> float | None:
        return self.fit.val_loss

    @property
    def steps(self) -> int:
        return self.fit.steps

    @property
    def seconds(self) -> float:
        return self.fit.seconds

    @property
    def losses(self) -> dict[str, Any]:
        return self.fit.losses

    @property
    def sample_check(self) -> dict[str, Any] | None:
        return self.fit.sample_check

    def signal(self, features_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(signal, ‖s‖) for raw feature rows (n, d) or one row (d,), as in the first version."""
        rows = np.atleast_2d(features_raw)
        out = self.score_rows(rows, np.zeros(len(rows), dtype=np.int64))
        if np.ndim(features_raw) == 1:
            return out.signal[0], out.norm[0]
        return out.signal, out.norm

    def score_rows(self, features_raw: np.ndarray, keys: np.ndarray) -> FoldScores:
        """Every output for raw feature rows (n, d); keys (n,) (bar times) seed inpainting per row."""
        return score_rows(self.members, self.calibration, self.config, features_raw, keys)

    def unusualness(self, norm: float) -> float:
        """Quantile of ‖s‖ within the training window (0 = most typical, 1 = beyond anything seen)."""
        ref = self.train_norms_sorted
        return float(np.searchsorted(ref, norm, side="right")) / len(ref)


def nearest_sigma(sigmas: np.ndarray, target: float) -> float:
    """The ladder level closest to ``target`` on a log scale."""
    return float(sigmas[int(np.argmin(np.abs(np.log(sigmas) - math.log(target))))])


def state_signal(score: np.ndarray, direction_features: tuple[int, ...]) -> np.ndarray:
    """THE state signal: Σ_k s_k over the return components. Positive when returns sit below where
    the model expects them (reversion up) → long."""
    return score[..., list(direction_features)].sum(axis=-1)


def _x_std(model: ScoreModel, features_raw: np.ndarray, n_features: int) -> np.ndarray:
    """Standardise the feature columns with the training window's statistics (joint model: first n)."""
    st = model.standardizer
    z = (np.asarray(features_raw, dtype=np.float64) - st.mean[:n_features]) / st.std[:n_features]
    return np.clip(z, -st.clip, st.clip)


def _forecast_raw(model: ScoreModel, x_std: np.ndarray, keys: np.ndarray, config: WalkForwardConfig,
                  seed: int, float32: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """(forecast mean, samples or None) in raw log-return units for one member."""
    y_mean, y_std = float(model.standardizer.mean[-1]), float(model.standardizer.std[-1])
    if config.forecast_method == "inpaint":
        samples = inpaint_samples(model, x_std, keys, seed, InpaintSettings(n_samples=config.inpaint_samples))
        samples = y_mean + y_std * samples
        return samples.mean(axis=1), samples
    y = tweedie_forecast(model, x_std, nearest_sigma(model.sigmas, config.forecast_sigma), config.forecast_iterations,
                         float32=float32)
    return y_mean + y_std * y, None


def _vol_scale(features_raw: np.ndarray, spec_vol_col: int, horizon: int) -> np.ndarray:
    """Scale of an h-bar return from the current 24-bar volatility: exp(log_vol)·√h."""
    return np.exp(np.asarray(features_raw)[:, spec_vol_col]) * math.sqrt(horizon)


def score_rows(members: list[ScoreModel], cal: FoldCalibration, config: WalkForwardConfig,
               features_raw: np.ndarray, keys: np.ndarray, *, float32: bool = False) -> FoldScores:
    """The fold's outputs for raw rows (n, d): the one place the signal and forecast are formed.

    float32=True runs the torch network instead of the float64 numpy copy: ~5x faster on a whole
    training window, used only for the window's own calibration (threshold, ‖s‖ reference, residuals).
    """
    rows = np.atleast_2d(np.asarray(features_raw, dtype=np.float64))
    n_feat = rows.shape[1]
    if cal.model_target == "state":
        scores = [(m.score32 if float32 else m.score)(_x_std(m, rows, n_feat), cal.signal_sigma) for m in members]
        signal = np.mean([state_signal(s, config.direction_features) for s in scores], axis=0)
        norm = np.mean([np.sqrt((s * s).sum(axis=-1)) for s in scores], axis=0)
        return FoldScores(signal, norm)
    means, pooled, norms = [], [], []
    for k, m in enumerate(members):
        x = _x_std(m, rows, n_feat)
        mean, samples = _forecast_raw(m, x, keys, config, config.train.seed + k, float32)
        means.append(mean)
        if samples is not None:
            pooled.append(samples)
        y_std = (mean - m.standardizer.mean[-1]) / m.standardizer.std[-1]
        s = (m.score32 if float32 else m.score)(np.concatenate([x, y_std[:, None]], axis=1), cal.signal_sigma)
        norms.append(np.sqrt((s * s).sum(axis=-1)))
    mean = np.mean(means, axis=0)
    lo_q, hi_q = (1 - config.interval) / 2, (1 + config.interval) / 2
    if pooled:
        allsamples = np.concatenate(pooled, axis=1)
        low, high = np.quantile(allsamples, lo_q, axis=1), np.quantile(allsamples, hi_q, axis=1)
    else:
        rq = cal.residual_quantiles or (0.0, 0.0)
        scale = _vol_scale(rows, n_feat - 3, cal.horizon_bars)
        low, high = mean + scale * rq[0], mean + scale * rq[1]
    return FoldScores(mean, np.mean(norms, axis=0), mean, low, high)


def _train_member(x_train: np.ndarray, config: WalkForwardConfig, seed_offset: int,
                  previous: ScoreModel | None, standardizer: Standardizer):
    train_cfg = replace(config.train, seed=config.train.seed + seed_offset)
    init = None
    if previous is not None and config.warm_start and previous.dim == x_train.shape[1]:
        init = previous.network.state_dict()
    result = train_score_model(x_train, train_cfg, init_state=init)
    return result, ScoreModel(result.model, result.sigmas, standardizer)


def fit_fold(fold_index: int, rows_raw: np.ndarray, train_start_ts: int, train_end_ts: int,
             trade_start_ts: int, trade_end_ts: int, config: WalkForwardConfig, spec: FeatureSpec,
             previous: FoldModel | None = None, opens: np.ndarray | None = None) -> FoldModel:
    """Fit one fold on its window's raw feature rows (time order, warm-up rows dropped).

    The forecast target needs ``opens`` (the bar opens aligned with the rows): row j's target is
    ln(O[j+1+h]/O[j+1]), so the last h+1 rows have none and are left out of training.
    """
    t0 = time.perf_counter()
    forecast = config.is_forecast
    if forecast:
        if opens is None or len(opens) != len(rows_raw):
            raise ValueError("the forecast target needs the bar opens aligned with the feature rows")
        y = forecast_targets(opens, config.horizon_bars)
        keep = np.isfinite(y)
        data_raw = np.concatenate([rows_raw[keep], y[keep, None]], axis=1)
        names = tuple(spec.names) + (f"fwd_ret_{config.horizon_bars}",)
    else:
        data_raw, names = rows_raw, tuple(spec.names)
    standardizer = Standardizer.fit(data_raw, names=names)
    x_std = standardizer.transform(data_raw)
    results, members = [], []
    for k in range(config.ensemble):
        prev = previous.members[k] if previous is not None and k < len(previous.members) else None
        result, model = _train_member(x_std, config, k, prev, standardizer)
        results.append(result)
        members.append(model)
    sigma = nearest_sigma(results[0].sigmas, config.signal_sigma)
    cal = FoldCalibration(0.0, sigma, trade_start_ts, trade_end_ts, (), config.model_target,
                          config.horizon_bars if forecast else 0)
    fit_rows = data_raw[:, : rows_raw.shape[1]]
    in_sample = score_rows(members, cal, replace(config, forecast_method="tweedie"), fit_rows,
                           np.zeros(len(fit_rows), dtype=np.int64), float32=True)  # the window's own outputs
    residual_q = None
    if forecast:
        scale = _vol_scale(fit_rows, rows_raw.shape[1] - 3, config.horizon_bars)
        resid = (data_raw[:, -1] - in_sample.signal) / scale
        residual_q = (float(np.quantile(resid, (1 - config.interval) / 2)),
                      float(np.quantile(resid, (1 + config.interval) / 2)))
    threshold = float(np.quantile(np.abs(in_sample.signal), config.threshold_quantile))
    cal = replace(cal, threshold=threshold, train_norms_sorted=tuple(np.sort(in_sample.norm).tolist()),
                  residual_quantiles=residual_q)
    train_cfg = config.train
    check = None
    if config.sample_check_samples > 0 and fold_index % max(1, config.sample_check_every) == 0:
        check = check_samples(results[0].model, results[0].sigmas, x_std, n_samples=config.sample_check_samples,
                              steps_per_sigma=config.sample_check_steps,
                              step_ratio=config.sample_check_step_ratio, seed=train_cfg.seed,
                              threads=train_cfg.threads).to_dict()
    first = results[0]
    losses = {"train": first.train_loss_history, "val": first.val_loss_history,
              "best_step": first.best_step, "warm_started": first.warm_started,
              "sigmas": [float(x) for x in first.sigmas], "signal_sigma": sigma,
              "members_best_val": [float(r.best_val_loss) for r in results]}
    train_loss = first.train_loss_history[-1][1] if first.train_loss_history else None
    vals = [r.best_val_loss for r in results if not math.isnan(r.best_val_loss)]
    val_loss = float(np.mean(vals)) if vals else None
    blob = checkpoint_to_bytes(members[0], config=config.to_dict(), fold_index=fold_index,
                               train_start_ms=train_start_ts, train_end_ms=train_end_ts,
                               members=members[1:], calibration=cal.to_dict())
    seconds = time.perf_counter() - t0
    steps = sum(r.steps_run for r in results)
    log.info("fold %d: %d rows, %d steps, val loss %s, threshold %.4g, %.2fs", fold_index, len(rows_raw),
             steps, f"{val_loss:.4f}" if val_loss is not None else "-", threshold, seconds)
    return FoldModel(fold_index, members, cal, train_start_ts, train_end_ts,
                     FitReport(train_loss, val_loss, steps, seconds, losses, check), blob, config)


def fold_from_checkpoint(blob: bytes, losses: dict[str, Any] | None = None,
                         sample_check: dict[str, Any] | None = None) -> FoldModel:
    """Rebuild a stored fold (a restart loads it instead of retraining)."""
    ck = checkpoint_from_bytes(blob)
    cfg = dict(ck.config)
    cfg["direction_features"] = tuple(cfg.get("direction_features", (0, 1, 2)))
    cfg["train"] = TrainConfig.from_dict(cfg["train"]) if isinstance(cfg.get("train"), dict) else TrainConfig()
    config = WalkForwardConfig(**cfg)
    if ck.calibration:
        cal = FoldCalibration.from_dict(ck.calibration)
    else:  # a checkpoint of the first version kept these in its free `extra` dict
        e = ck.extra
        cal = FoldCalibration(float(e["threshold"]), float(e["signal_sigma"]), int(e["trade_start_ms"]),
                              int(e["trade_end_ms"]), tuple(float(v) for v in e["train_norms_sorted"]))
    return FoldModel(ck.fold_index, ck.members, cal, ck.train_start_ms, ck.train_end_ms,
                     FitReport(None, None, 0, 0.0, losses or {}, sample_check), blob, config)


def model_version_record(fold: FoldModel, wf: WalkForwardConfig) -> ModelVersionRecord:
    """The storable record of one fold."""
    return ModelVersionRecord(
        fold_index=fold.fold_index, train_start_ts=fold.train_start_ts, train_end_ts=fold.train_end_ts,
        trade_start_ts=fold.trade_start_ts, trade_end_ts=fold.trade_end_ts, objective=wf.train.objective,
        seed=wf.train.seed, threshold=fold.threshold, train_loss=fold.train_loss, val_loss=fold.val_loss,
        steps=fold.steps, train_seconds=fold.seconds, config=wf.to_dict(), losses=fold.losses,
        sample_check=fold.sample_check, checkpoint=fold.checkpoint)


FoldKey = tuple[int, int, int]  # (fold index, train start ts, train end ts)
FoldCallback = Callable[[FoldModel, bool], None]  # (fold, reused from the cache)


class WalkForward:
    """The walk-forward loop, bar by bar: ``update(ts, row, open) -> the fold starting here, or None``.

    Keeps the rows of the last ``train_days`` (+ their bar opens, for forecast
    targets), starts a fold at each block boundary (skipping whole blocks a data
    gap jumped over), and fits it or takes it from ``cache`` (same index and
    window → same model), so a rerun or a restart does not retrain.
    """

    def __init__(self, config: WalkForwardConfig, spec: FeatureSpec,
                 cache: dict[FoldKey, FoldModel] | None = None, on_fold: FoldCallback | None = None) -> None:
        self.config = config
        self.spec = spec
        self.cache: dict[FoldKey, FoldModel] = cache if cache is not None else {}
        self.on_fold = on_fold
        self.reset()

    def reset(self) -> None:
        self._ts: deque[int] = deque()
        self._rows: deque[np.ndarray | None] = deque()
        self._opens: deque[float] = deque()
        self._next_fold_ts: int | None = None
        self._fold_index = 0
        self.current: FoldModel | None = None
        self.folds: list[FoldModel] = []
        self.new_folds: list[FoldModel] = []  # fitted or reused since the caller last drained it

    def update(self, ts: int, row: np.ndarray | None, open_: float) -> FoldModel | None:
        """Feed one closed bar (row None during feature warm-up). Returns the fold that starts at this bar."""
        cfg = self.config
        if self._next_fold_ts is None:
            self._next_fold_ts = ts + cfg.train_ms
        self._ts.append(ts)
        self._rows.append(row)
        self._opens.append(open_)
        horizon = ts - cfg.train_ms
        while self._ts and self._ts[0] <= horizon:
            self._ts.popleft()
            self._rows.popleft()
            self._opens.popleft()
        if ts < self._next_fold_ts:
            return None
        return self._start_fold(ts)

    def _start_fold(self, bar_ts: int) -> FoldModel | None:
        cfg = self.config
        block_start = self._next_fold_ts
        assert block_start is not None
        while block_start + cfg.retrain_ms <= bar_ts:  # a data gap skipped whole blocks
            block_start += cfg.retrain_ms
        self._next_fold_ts = block_start + cfg.retrain_ms
        valid = [i for i, r in enumerate(self._rows) if r is not None]
        if len(valid) < cfg.min_train_rows:
            log.warning("fold at %d: only %d feature rows in the window (< %d); not trading this block",
                        bar_ts, len(valid), cfg.min_train_rows)
            self.current = None
            return None
        train_start, train_end = self._ts[valid[0]], self._ts[valid[-1]]
        key = (self._fold_index, train_start, train_end)
        fold = self.cache.get(key)
        reused = fold is not None
        if fold is None:
            rows = np.vstack([self._rows[i] for i in valid])
            opens = np.fromiter((self._opens[i] for i in valid), dtype=np.float64, count=len(valid))
            fold = fit_fold(self._fold_index, rows, train_start, train_end, block_start, self._next_fold_ts,
                            cfg, self.spec, previous=self.current, opens=opens)
            self.cache[key] = fold
        self.current = fold
        self.folds.append(fold)
        self.new_folds.append(fold)
        self._fold_index += 1
        if self.on_fold is not None:
            self.on_fold(fold, reused)
        return fold
