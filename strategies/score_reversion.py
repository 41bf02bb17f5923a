"""Score strategy: features → signal (or forecast) → decision, on a walk-forward score model.

At the close of bar t (DESIGN.md "The strategy"):
- features x_t from bars ≤ t (models/features.py);
- the current fold (models/walk_forward.py: the loop, the schedule and the fold
  cache live there) turns them into a signal: for the "state" target the sum
  of the score's return components (positive: returns abnormally low → long),
  for the "forecast" target the forecast mean of ln(O_{t+1+h}/O_{t+1}) with
  its interval (models/forecast.py);
- state target: enter (all-in at the next open) when flat and |signal| > τ,
  the fold's calibrated threshold; exit when the signal crosses zero against
  the position, after ``max_hold_bars``, or at the protective stop;
- forecast target (cost-aware): enter only when the expected move in price
  terms beats the round-trip cost (2·(fee + slippage), the broker settings the
  strategy is given) by ``cost_margin_pct``; optionally size by confidence
  (|mean| / half-width of the interval, capped at 1× equity); exit at the
  horizon, on a reversal of the forecast, or at the stop.
- entries (both targets): ``entry_order="market"`` buys/sells at the next open
  (taker fee + slippage); ``"passive"`` rests a limit at the signal bar's close
  shifted ``passive_offset_bps`` in the trade's favour (long: C_t·(1 − k),
  short: C_t·(1 + k)). It fills only when a later bar trades through that price
  and expires after ``passive_expiry_bars`` bars; while it rests the strategy
  places no other entry. The forecast is of ln(O_{t+1+h}/O_{t+1}) and the next
  open's expected level is C_t, so the limit sits k below (above) the level
  the forecast starts from: a fill buys the same forecast move k cheaper, at
  the cost of missing the trades that never come back. The cost rule then
  counts the maker fee for the entry and the taker fee + slippage for the
  (market) exit.
The signal, threshold and fold index go with every order, and every bar's
signal and unusualness (quantile of ‖s‖ in the training window) is recorded.

``prepare_backtest(series)`` is the backtest fast path: it computes every
feature row up front (the same incremental arithmetic as bar by bar) and lets
each fold score its whole block in one batch. A paper run never calls it and
queries bar by bar; tests hold both equal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from domain.types import Bar, Side
from models.features import FeatureSpec, IncrementalFeatures
from domain.records import ModelVersionRecord
from models.walk_forward import (FoldKey, FoldModel, FoldScores, WalkForward, fold_from_checkpoint,
                                 model_version_record)
from strategies.base import Context, Strategy
from strategies.score_config import ENTRY_ORDERS, ScoreReversionConfig

__all__ = ["ENTRY_ORDERS", "ScoreReversion", "ScoreReversionConfig", "ForecastLog", "model_version_record"]

@dataclass
class ForecastLog:
    """Per-bar forecasts (columns), for calibration reports: bar time, mean, interval ends."""

    ts_ms: list[int] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    low: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)


class ScoreReversion(Strategy):
    name = "score"

    def __init__(self, config: ScoreReversionConfig = ScoreReversionConfig(),
                 fold_cache: dict[FoldKey, FoldModel] | None = None,
                 on_fold: Callable[[FoldModel, bool], None] | None = None) -> None:
        self.config = config
        self.spec = FeatureSpec()
        self.walk = WalkForward(config.walk_forward, self.spec, cache=fold_cache)
        self.on_fold = on_fold
        self._prepared: tuple[np.ndarray, np.ndarray, list[np.ndarray | None]] | None = None
        self._prepared_for: Any = None
        self._prepared_token: object = None
        self._reset()

    # --- compatibility views over the walk-forward loop -------------------------------------------
    @property
    def fold_cache(self) -> dict[FoldKey, FoldModel]:
        return self.walk.cache

    @property
    def folds(self) -> list[FoldModel]:
        return self.walk.folds

    @property
    def current(self) -> FoldModel | None:
        return self.walk.current

    @property
    def model_versions(self) -> list[ModelVersionRecord]:
        """Every fold this run used (for storing a finished backtest)."""
        return [model_version_record(f, self.config.walk_forward) for f in self.folds]

    def drain_model_versions(self) -> list[ModelVersionRecord]:
        fresh, self._new_model_versions = self._new_model_versions, []
        return fresh

    def _reset(self) -> None:
        self.walk.reset()
        self.walk.on_fold = self._fold_started
        self._features = IncrementalFeatures(self.spec)
        self._index = 0
        self._block: tuple[int, FoldModel, FoldScores] | None = None
        self._new_model_versions: list[ModelVersionRecord] = []  # since the last drain_model_versions
        self.forecasts = ForecastLog()

    def _fold_started(self, fold: FoldModel, reused: bool) -> None:
        self._new_model_versions.append(model_version_record(fold, self.config.walk_forward))
        if self.on_fold is not None:
            self.on_fold(fold, reused)

    def preload_folds(self, stored: list[tuple[bytes, dict[str, Any] | None, dict[str, Any] | None]]) -> int:
        """Make stored folds (checkpoint, losses, sample check) reusable, so a restart does not retrain."""
        for blob, losses, check in stored:
            fold = fold_from_checkpoint(blob, losses, check)
            self.fold_cache[(fold.fold_index, fold.train_start_ts, fold.train_end_ts)] = fold
        return len(stored)

    def warmup_bars(self, timeframe_ms: int) -> int:
        # The first fold is fitted once train_days of history were seen; + feature warm-up, + margin.
        return math.ceil(self.config.walk_forward.train_ms / timeframe_ms) + self.spec.warmup_bars + 2

    def first_decision_ts(self, first_bar_ts: int) -> int | None:
        return first_bar_ts + self.config.walk_forward.train_ms  # no model (and so no signal) before the first fold

    def prepare_backtest(self, series: Any) -> None:
        """Backtest fast path: every feature row up front (same arithmetic as bar by bar), so a fold
        scores its whole block at once. Rows depend only on bars ≤ their own, so nothing leaks."""
        if self._prepared is not None and self._prepared_for is series:
            return  # already prepared (e.g. shared by a rerun on the same bars)
        feats = IncrementalFeatures(self.spec)
        rows = [feats.update(o, h, lo, c, v) for o, h, lo, c, v in
                zip(series.open.tolist(), series.high.tolist(), series.low.tolist(), series.close.tolist(),
                    series.volume.tolist())]
        self._prepared = (np.asarray(series.ts_ms, dtype=np.int64), np.asarray(series.close, dtype=float), rows)
        self._prepared_for = series
        self._prepared_token = object()  # identifies these rows in the folds' block-score caches

    def share_prepared(self, other: ScoreReversion) -> None:
        """Reuse another run's prepared feature rows and fold outputs (a rerun on the same bars, e.g.
        without fees: same folds, same rows, so the same signal series)."""
        self._prepared, self._prepared_for = other._prepared, other._prepared_for
        self._prepared_token = other._prepared_token

    def on_start(self, ctx: Context) -> None:
        self._reset()

    def on_bar(self, bar: Bar, ctx: Context) -> None:
        row = self._next_row(bar)
        fold = self.walk.update(bar.ts_ms, row, bar.open)
        if fold is not None and self._prepared is not None:
            self._score_block(fold)
        fold = self.walk.current
        self._index += 1
        if fold is None or row is None:
            return
        scores = self._scores(bar, row, fold)
        signal = float(scores.signal[0])
        unusual = fold.unusualness(float(scores.norm[0]))
        if self.config.walk_forward.is_forecast:
            assert scores.forecast_mean is not None and scores.forecast_low is not None
            assert scores.forecast_high is not None
            log_ = self.forecasts
            log_.ts_ms.append(bar.ts_ms)
            log_.mean.append(signal)
            log_.low.append(float(scores.forecast_low[0]))
            log_.high.append(float(scores.forecast_high[0]))
            threshold = math.log1p(self.config.round_trip_cost + self.config.cost_margin_pct / 100)
            ctx.record_signal(signal, threshold, unusual, fold.fold_index)
            self._decide_forecast(bar, ctx, scores, threshold, unusual, fold)
        else:
            ctx.record_signal(signal, fold.threshold, unusual, fold.fold_index)
            self._decide_state(bar, ctx, signal, unusual, fold)

    # --- features → signal ------------------------------------------------------------------------
    def _next_row(self, bar: Bar) -> np.ndarray | None:
        if self._prepared is None:
            return self._features.update(bar.open, bar.high, bar.low, bar.close, bar.volume)
        ts, close, rows = self._prepared
        i = self._index
        if i >= len(ts) or ts[i] != bar.ts_ms or close[i] != bar.close:
            raise RuntimeError(f"bar {bar.ts_ms} is not the prepared series' bar {i}: prepare_backtest() "
                               "must be given the bars the run replays")
        return rows[i]

    def _score_block(self, fold: FoldModel) -> None:
        """Score the fold's whole block [this bar, trade_end) in one batch (backtest fast path)."""
        assert self._prepared is not None
        ts, _, rows = self._prepared
        lo = self._index
        hi = int(np.searchsorted(ts, fold.trade_end_ts, side="left"))
        if hi <= lo or rows[lo] is None:
            self._block = None
            return
        key = (self._prepared_token, lo, hi)  # the same prepared rows (shared by a rerun) → the same outputs
        scores = fold.block_scores.get(key)
        if scores is None:
            scores = fold.block_scores[key] = fold.score_rows(np.vstack(rows[lo:hi]), ts[lo:hi])
        self._block = (lo, fold, scores)

    def _scores(self, bar: Bar, row: np.ndarray, fold: FoldModel) -> FoldScores:
        block = self._block
        i = self._index - 1
        if block is not None and block[1] is fold and 0 <= i - block[0] < len(block[2].signal):
            return block[2].row(i - block[0])
        return fold.score_rows(row[None, :], np.array([bar.ts_ms], dtype=np.int64))

    # --- signal → decision ------------------------------------------------------------------------
    def _decide_state(self, bar: Bar, ctx: Context, signal: float, unusual: float, fold: FoldModel) -> None:
        cfg = self.config
        pos = ctx.position_qty
        info = {"signal": signal, "threshold": fold.threshold, "model_version": fold.fold_index}
        if pos == 0.0:
            if abs(signal) <= fold.threshold or not math.isfinite(signal) or self._entry_resting(ctx):
                return
            if cfg.unusual_gate is not None and unusual > cfg.unusual_gate:
                return
            self._enter(bar, ctx, 1.0 if signal > 0 else -1.0, info)
            return
        held = ctx.bars_in_position
        if (pos > 0 and signal < 0) or (pos < 0 and signal > 0):
            ctx.cancel_all()
            ctx.close("signal", **info)
        elif held is not None and held >= cfg.max_hold_bars:
            ctx.cancel_all()
            ctx.close("max_hold", **info)

    def _decide_forecast(self, bar: Bar, ctx: Context, scores: FoldScores, threshold: float, unusual: float,
                         fold: FoldModel) -> None:
        """Cost-aware: the expected move exp(m) - 1 must beat cost + margin (in price terms)."""
        cfg = self.config
        mean = float(scores.signal[0])
        if not math.isfinite(mean):
            return
        hurdle = cfg.round_trip_cost + cfg.cost_margin_pct / 100
        move = math.expm1(mean)
        direction = 1.0 if move > hurdle else (-1.0 if -move > hurdle else 0.0)
        info = {"signal": mean, "threshold": threshold, "model_version": fold.fold_index}
        pos = ctx.position_qty
        if pos == 0.0:
            if direction == 0.0 or (cfg.unusual_gate is not None and unusual > cfg.unusual_gate):
                return
            if self._entry_resting(ctx):
                return
            fraction = 1.0
            if cfg.size_by_confidence:
                assert scores.forecast_low is not None and scores.forecast_high is not None
                half = 0.5 * float(scores.forecast_high[0] - scores.forecast_low[0])
                fraction = min(1.0, abs(mean) / half) if half > 0 else 1.0
            self._enter(bar, ctx, direction * fraction, info)
            return
        held = ctx.bars_in_position
        if cfg.exit_on_reversal and direction != 0.0 and (direction > 0) != (pos > 0):
            ctx.cancel_all()
            ctx.close("reversal", **info)
        elif held is not None and held + 1 >= self.config.walk_forward.horizon_bars:
            ctx.cancel_all()  # decided at the close of bar entry+h-1: fills at O_{t+1+h}, the target's end
            ctx.close("horizon", **info)

    def _entry_resting(self, ctx: Context) -> bool:
        """A passive entry (with its bracket) still rests: place no other until it fills or expires."""
        return self.config.passive and bool(ctx.pending_orders)

    def _enter(self, bar: Bar, ctx: Context, fraction: float, info: dict[str, Any]) -> None:
        cfg = self.config
        if fraction < 0 and cfg.long_only:
            return
        if cfg.passive:
            k = cfg.passive_offset_bps / 1e4
            side, price = (Side.BUY, bar.close * (1 - k)) if fraction > 0 else (Side.SELL, bar.close * (1 + k))
            ctx.limit(side, price, "entry", target_fraction=fraction, expire_after_bars=cfg.passive_expiry_bars,
                      **info)
        else:
            ctx.target_percent(fraction, "entry", **info)
        if cfg.stop_loss_pct > 0:
            if fraction > 0:
                ctx.stop(Side.SELL, bar.close * (1 - cfg.stop_loss_pct / 100), "stop", **info)
            else:
                ctx.stop(Side.BUY, bar.close * (1 + cfg.stop_loss_pct / 100), "stop", **info)
