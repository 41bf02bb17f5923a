"""Score-reversion: trade toward "normal" market states, as judged by a walk-forward score model.

At the close of bar t (DESIGN.md "The strategy"):
- features x_t from bars ≤ t (models/features.py), standardised with the
  current fold's training-window statistics;
- signal = Σ of the score's return components s_θ(x_t, σ_signal)_k; positive
  means returns are abnormally low → expect reversion up → long;
- enter (all-in at the next open) when flat and |signal| > τ, the fold's
  calibrated threshold; optionally skip entries in extreme states (gate);
- exit when the signal crosses back through zero against the position, after
  ``max_hold_bars``, or at a protective stop ``stop_loss_pct`` from the
  signal bar's close (a resting stop order, filled intra-bar by the broker).
The signal, threshold and fold index go with every order, and every bar's
signal and unusualness (quantile of ‖s‖ in the training window) is recorded.

The strategy is I/O-free: models it fits appear in ``new_model_versions`` for
the runner to store; ``fold_cache`` lets a rerun or a restart reuse fitted
folds instead of retraining (same window → same model).
"""
from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from domain.types import Bar, Side
from models.features import FeatureSpec, IncrementalFeatures
from models.walk_forward import FoldModel, WalkForwardConfig, fit_fold, fold_from_checkpoint
from domain.records import ModelVersionRecord
from strategies.base import Context, Strategy

log = logging.getLogger(__name__)
FoldKey = tuple[int, int, int]  # (fold index, train start ts, train end ts)

# DESIGN.md's window defaults are for 1h bars (365 and 30 days); on other timeframes the
# same number of bars is used, like the feature windows, so a 1m paper run warms up on
# ~6 days of candles instead of a year.
DEFAULT_TRAIN_BARS = 8760
DEFAULT_RETRAIN_BARS = 720


@dataclass(frozen=True)
class ScoreReversionConfig:
    walk_forward: WalkForwardConfig = field(default_factory=WalkForwardConfig)
    max_hold_bars: int = 48  # exit after this many bars in a position
    stop_loss_pct: float = 5.0  # protective stop distance from the signal bar's close, in % (0 = none)
    unusual_gate: float | None = None  # skip entries when unusualness exceeds this quantile (e.g. 0.999)
    long_only: bool = False  # never open shorts

    def __post_init__(self) -> None:
        if self.max_hold_bars < 1:
            raise ValueError(f"max_hold_bars must be >= 1, got {self.max_hold_bars}")
        if not 0 <= self.stop_loss_pct < 100:
            raise ValueError(f"stop_loss_pct must be in [0, 100), got {self.stop_loss_pct}")
        if self.unusual_gate is not None and not 0 < self.unusual_gate <= 1:
            raise ValueError(f"unusual_gate must be in (0, 1], got {self.unusual_gate}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["walk_forward"] = self.walk_forward.to_dict()
        return d


class ScoreReversion(Strategy):
    name = "score"

    def __init__(self, config: ScoreReversionConfig = ScoreReversionConfig(),
                 fold_cache: dict[FoldKey, FoldModel] | None = None,
                 on_fold: Callable[[FoldModel, bool], None] | None = None) -> None:
        self.config = config
        self.spec = FeatureSpec()
        self.fold_cache: dict[FoldKey, FoldModel] = fold_cache if fold_cache is not None else {}
        self.on_fold = on_fold
        self.folds: list[FoldModel] = []
        self.new_model_versions: list[ModelVersionRecord] = []
        self._reset()

    def _reset(self) -> None:
        wf = self.config.walk_forward
        self._features = IncrementalFeatures(self.spec)
        # Feature rows of the last train window (+ one block of slack), with their bar times.
        self._rows: deque[np.ndarray] = deque()
        self._row_ts: deque[int] = deque()
        self._first_ts: int | None = None
        self._next_fold_ts: int | None = None
        self._fold_index = 0
        self._train_ms = wf.train_ms
        self._retrain_ms = wf.retrain_ms
        self.current: FoldModel | None = None
        self.folds = []

    def preload_folds(self, stored: list[tuple[bytes, dict[str, Any] | None, dict[str, Any] | None]]) -> int:
        """Make stored folds (checkpoint, losses, sample check) reusable, so a restart does not retrain."""
        for blob, losses, check in stored:
            fold = fold_from_checkpoint(blob, losses, check)
            self.fold_cache[(fold.fold_index, fold.train_start_ts, fold.train_end_ts)] = fold
        return len(stored)

    @property
    def model_versions(self) -> list[ModelVersionRecord]:
        """Every fold this run used (for storing a finished backtest)."""
        return [model_version_record(f, self.config.walk_forward) for f in self.folds]

    def warmup_bars(self, timeframe_ms: int) -> int:
        # The first fold is fitted once train_days of history were seen; + feature warm-up, + margin.
        return math.ceil(self._train_ms / timeframe_ms) + self.spec.warmup_bars + 2

    def first_decision_ts(self, first_bar_ts: int) -> int | None:
        return first_bar_ts + self._train_ms  # no model (and so no signal) before the first fold

    def on_start(self, ctx: Context) -> None:
        self._reset()

    def on_bar(self, bar: Bar, ctx: Context) -> None:
        row = self._features.update(bar.open, bar.high, bar.low, bar.close, bar.volume)
        if self._first_ts is None:
            self._first_ts = bar.ts_ms
            self._next_fold_ts = bar.ts_ms + self._train_ms
        if row is not None:
            self._rows.append(row)
            self._row_ts.append(bar.ts_ms)
            horizon = bar.ts_ms - self._train_ms
            while self._row_ts and self._row_ts[0] <= horizon:
                self._rows.popleft()
                self._row_ts.popleft()
        if bar.ts_ms >= self._next_fold_ts:  # type: ignore[operator]
            self._start_fold(bar.ts_ms)
        fold = self.current
        if fold is None or row is None:
            return
        signal_arr, norm_arr = fold.signal(row)
        signal = float(signal_arr)
        unusual = fold.unusualness(float(norm_arr))
        ctx.record_signal(signal, fold.threshold, unusual, fold.fold_index)
        self._decide(bar, ctx, signal, unusual, fold)

    def _decide(self, bar: Bar, ctx: Context, signal: float, unusual: float, fold: FoldModel) -> None:
        cfg = self.config
        pos = ctx.position_qty
        info = {"signal": signal, "threshold": fold.threshold, "model_version": fold.fold_index}
        if pos == 0.0:
            if abs(signal) <= fold.threshold or not math.isfinite(signal):
                return
            if cfg.unusual_gate is not None and unusual > cfg.unusual_gate:
                return
            if signal > 0:
                ctx.target_percent(1.0, "entry", **info)
                if cfg.stop_loss_pct > 0:
                    ctx.stop(Side.SELL, bar.close * (1 - cfg.stop_loss_pct / 100), "stop", **info)
            elif not cfg.long_only:
                ctx.target_percent(-1.0, "entry", **info)
                if cfg.stop_loss_pct > 0:
                    ctx.stop(Side.BUY, bar.close * (1 + cfg.stop_loss_pct / 100), "stop", **info)
            return
        held = ctx.bars_in_position
        if (pos > 0 and signal < 0) or (pos < 0 and signal > 0):
            ctx.cancel_all()
            ctx.close("signal", **info)
        elif held is not None and held >= cfg.max_hold_bars:
            ctx.cancel_all()
            ctx.close("max_hold", **info)

    def _start_fold(self, bar_ts: int) -> None:
        """Fit (or reuse) the model for the block that starts at this bar."""
        wf = self.config.walk_forward
        block_start = self._next_fold_ts
        assert block_start is not None
        while block_start + self._retrain_ms <= bar_ts:  # a data gap skipped whole blocks
            block_start += self._retrain_ms
        self._next_fold_ts = block_start + self._retrain_ms
        if len(self._rows) < wf.min_train_rows:
            log.warning("fold at %d: only %d feature rows in the window (< %d); not trading this block",
                        bar_ts, len(self._rows), wf.min_train_rows)
            self.current = None
            return
        train_start, train_end = self._row_ts[0], self._row_ts[-1]
        key = (self._fold_index, train_start, train_end)
        fold = self.fold_cache.get(key)
        reused = fold is not None
        if fold is None:
            fold = fit_fold(self._fold_index, np.vstack(self._rows), train_start, train_end, block_start,
                            self._next_fold_ts, wf, self.spec, previous=self.current)
            self.fold_cache[key] = fold
        self.current = fold
        self.folds.append(fold)
        self.new_model_versions.append(model_version_record(fold, wf))
        self._fold_index += 1
        if self.on_fold is not None:
            self.on_fold(fold, reused)


def model_version_record(fold: FoldModel, wf: WalkForwardConfig) -> ModelVersionRecord:
    return ModelVersionRecord(
        fold_index=fold.fold_index, train_start_ts=fold.train_start_ts, train_end_ts=fold.train_end_ts,
        trade_start_ts=fold.trade_start_ts, trade_end_ts=fold.trade_end_ts, objective=wf.train.objective,
        seed=wf.train.seed, threshold=fold.threshold, train_loss=fold.train_loss, val_loss=fold.val_loss,
        steps=fold.steps, train_seconds=fold.seconds, config=wf.to_dict(), losses=fold.losses,
        sample_check=fold.sample_check, checkpoint=fold.checkpoint)
