"""The score strategy's report: did the model add anything over the baselines, out of sample?

Everything is measured on the same out-of-sample bars (from the first fold's
block on): the score strategy, buy-and-hold and the z-score baseline, each with
and without fees; the signal's information coefficient (Spearman correlation
with the next-bar and next-24-bar log return); and a per-fold table.
The no-fee rerun reuses the fitted folds (models do not depend on fees).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from engine.backtest import BacktestResult, buy_and_hold_metrics, run_backtest
from engine.broker import BrokerConfig
from domain.series import BarSeries
from domain.times import MS_PER_DAY, ms_to_date
from domain.types import SignalPoint
from strategies.score_reversion import ScoreReversion
from strategies.zscore import ZScoreConfig, ZScoreReversion

IC_HORIZONS = (1, 24)


def build_score_report(strategy: ScoreReversion, series: BarSeries, config: BrokerConfig, result: BacktestResult,
                       trade_from_ms: int | None) -> dict[str, Any]:
    no_fee = BrokerConfig(config.cash_quote, 0.0, config.slippage_bps, config.long_only)
    zscore_cfg = ZScoreConfig(long_only=config.long_only)
    zscore = run_backtest(series, ZScoreReversion(zscore_cfg), config, trade_from_ms=trade_from_ms)
    zscore_nf = run_backtest(series, ZScoreReversion(zscore_cfg), no_fee, trade_from_ms=trade_from_ms)
    rerun = ScoreReversion(strategy.config, fold_cache=strategy.fold_cache)  # same folds, same decisions
    rerun.share_prepared(strategy)
    score_nf = run_backtest(series, rerun, no_fee, trade_from_ms=trade_from_ms)
    oos = series if trade_from_ms is None else series.between(trade_from_ms, None)
    return {
        "out_of_sample": {"from_ts": result.start_ts, "to_ts": result.end_ts, "bars": len(oos),
                          "folds": len(strategy.folds)},
        "baselines": {"buy_and_hold": result.buy_and_hold.to_dict(), "zscore": zscore.metrics.to_dict()},
        "without_fees": {"score": score_nf.metrics.to_dict(),
                         "buy_and_hold": buy_and_hold_metrics(oos, no_fee).to_dict(),
                         "zscore": zscore_nf.metrics.to_dict()},
        "ic": {"score": information_coefficients(result.events.signals, series),
               "zscore (−z)": information_coefficients(zscore.events.signals, series, sign=-1.0)},
        "folds": fold_table(strategy, result, config.cash_quote),
        **({"forecast": forecast_calibration(strategy, series, result.start_ts)}
           if strategy.config.walk_forward.is_forecast else {}),
    }


def forward_open_returns(series: BarSeries, horizon: int) -> pd.Series:
    """ln(O_{t+1+h} / O_{t+1}) by bar time: what a trade entered at the next open and held h bars earns."""
    o = pd.Series(series.open, index=series.ts_ms)
    return np.log(o.shift(-(1 + horizon)) / o.shift(-1))


def pinball(y: np.ndarray, q: np.ndarray, level: float) -> float:
    """Mean quantile (pinball) loss of predictions q of the level-quantile of y."""
    d = y - q
    return float(np.mean(np.maximum(level * d, (level - 1) * d)))


def forecast_calibration(strategy: ScoreReversion, series: BarSeries, from_ts: int | None) -> dict[str, Any]:
    """The forecast against what happened: IC with its own target, coverage of its interval, and the
    pinball loss of the interval ends relative to climatology (the trailing year's quantiles of the
    same target, known at t: only targets that ended by t)."""
    wf = strategy.config.walk_forward
    h = wf.horizon_bars
    log_ = strategy.forecasts
    fc = pd.DataFrame({"mean": log_.mean, "low": log_.low, "high": log_.high}, index=log_.ts_ms)
    if from_ts is not None:
        fc = fc[fc.index >= from_ts]
    y_all = forward_open_returns(series, h)
    lo_level, hi_level = (1 - wf.interval) / 2, (1 + wf.interval) / 2
    past = y_all.shift(h + 1)
    window = int(round(365 * MS_PER_DAY / series.timeframe_ms))
    clim_lo = past.rolling(window, min_periods=window // 4).quantile(lo_level).reindex(fc.index)
    clim_hi = past.rolling(window, min_periods=window // 4).quantile(hi_level).reindex(fc.index)
    y = y_all.reindex(fc.index)
    ok = (y.notna() & clim_lo.notna()).to_numpy()
    out: dict[str, Any] = {"horizon_bars": h, "method": wf.forecast_method, "interval": wf.interval,
                           "n": int(ok.sum()), "ic": None, "coverage": None, "pinball_vs_climatology": None,
                           "mean_abs_forecast": float(fc["mean"].abs().mean()) if len(fc) else None}
    if ok.sum() > 10:
        yv, lo, hi = y.to_numpy()[ok], fc["low"].to_numpy()[ok], fc["high"].to_numpy()[ok]
        out["ic"] = spearman(fc["mean"].to_numpy()[ok], yv)
        out["coverage"] = float(np.mean((yv >= lo) & (yv <= hi)))
        model = pinball(yv, lo, lo_level) + pinball(yv, hi, hi_level)
        clim = pinball(yv, clim_lo.to_numpy()[ok], lo_level) + pinball(yv, clim_hi.to_numpy()[ok], hi_level)
        out["pinball_vs_climatology"] = model / clim if clim > 0 else None
    return out


def forward_log_returns(series: BarSeries, horizon: int) -> pd.Series:
    """ln(C_{t+h} / C_t) indexed by bar open time; NaN where the future is not in the data."""
    close = pd.Series(series.close, index=series.ts_ms)
    return np.log(close.shift(-horizon) / close)


def information_coefficients(signals: list[SignalPoint], series: BarSeries, sign: float = 1.0) -> dict[str, Any]:
    """Spearman IC of the signal with the next 1 and 24 bars' log returns, with a t-statistic."""
    if not signals:
        return {f"next_{h}": None for h in IC_HORIZONS} | {"n": 0}
    sig = pd.Series([sign * s.signal for s in signals], index=[s.ts_ms for s in signals])
    out: dict[str, Any] = {"n": len(sig)}
    for h in IC_HORIZONS:
        fwd = forward_log_returns(series, h).reindex(sig.index)
        ok = fwd.notna() & sig.notna()
        n = int(ok.sum())
        ic = spearman(sig[ok].to_numpy(), fwd[ok].to_numpy()) if n > 10 else math.nan
        out[f"next_{h}"] = None if math.isnan(ic) else ic
        # Overlapping 24-bar windows are autocorrelated: this t is optimistic for h > 1.
        out[f"t_next_{h}"] = None if math.isnan(ic) else ic * math.sqrt((n - 2) / max(1e-12, 1 - ic * ic))
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties) = Pearson correlation of the ranks."""
    ra = pd.Series(a).rank().to_numpy()
    rb = pd.Series(b).rank().to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def fold_table(strategy: ScoreReversion, result: BacktestResult, initial_cash: float) -> list[dict[str, Any]]:
    """One row per fold: its windows, losses, threshold, sample check, trades and return."""
    ev = result.events
    eq_ts = np.asarray(ev.equity_ts_ms, dtype=np.int64)
    eq = np.asarray(ev.equity_quote, dtype=float)
    entries = np.asarray([t.entry_ts_ms for t in ev.trades], dtype=np.int64)
    rows = []
    for fold in strategy.folds:
        lo = int(np.searchsorted(eq_ts, fold.trade_start_ts))
        hi = int(np.searchsorted(eq_ts, fold.trade_end_ts))
        start_eq = eq[lo - 1] if lo > 0 else initial_cash
        end_eq = eq[hi - 1] if hi > 0 else start_eq
        check = fold.sample_check or {}
        rows.append({
            "fold": fold.fold_index,
            "train": f"{ms_to_date(fold.train_start_ts)}→{ms_to_date(fold.train_end_ts)}",
            "trade": f"{ms_to_date(fold.trade_start_ts)}→{ms_to_date(fold.trade_end_ts)}",
            "steps": fold.steps,
            "train_loss": _round(fold.train_loss),
            "val_loss": _round(fold.val_loss),
            "threshold": _round(fold.threshold),
            "swd": _round(check.get("swd")),
            "swd_ref": _round(check.get("swd_reference")),
            "trades": int(np.sum((entries >= fold.trade_start_ts) & (entries < fold.trade_end_ts))),
            "return_pct": _round(100 * (end_eq / start_eq - 1)) if start_eq else None,
        })
    return rows


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), digits)
