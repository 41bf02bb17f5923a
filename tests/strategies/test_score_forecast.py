"""The forecast target: cost-aware entries, horizon exits, batch = per-bar, no lookahead, ensembles."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from engine.backtest import run_backtest
from engine.broker import BrokerConfig
from engine.loop import Engine
from domain.series import BarSeries
from feeds.synthetic import synthetic_bars
from models.training import TrainConfig
from models.walk_forward import WalkForwardConfig, fold_from_checkpoint
from strategies.score_reversion import ScoreReversion, ScoreReversionConfig

from .test_score_reversion import perturb_after

HOUR = 3_600_000
H = 4


def forecast_config(seed: int = 0, ensemble: int = 1, method: str = "tweedie", **kw) -> ScoreReversionConfig:
    train = TrainConfig(hidden=32, depth=2, max_steps=120, warm_start_steps=30, batch_size=256,
                        eval_every_steps=30, seed=seed)
    wf = WalkForwardConfig(train_days=20, retrain_days=5, sample_check_samples=0, model_target="forecast",
                           horizon_bars=H, forecast_method=method, inpaint_samples=8, ensemble=ensemble,
                           train=train)
    # A zero margin and low fee so the tiny model trades often enough to test the rules.
    return ScoreReversionConfig(walk_forward=wf, cost_margin_pct=0.0, fee_bps=1.0, stop_loss_pct=0.0, **kw)


@pytest.fixture(scope="module")
def series() -> BarSeries:
    return synthetic_bars(24 * 40, seed=5)


@pytest.fixture(scope="module")
def batched(series: BarSeries):
    strategy = ScoreReversion(forecast_config())
    result = run_backtest(series, strategy, BrokerConfig(fee_bps=1.0))  # prepare_backtest: one batch per fold
    return strategy, result.events


def test_a_batch_per_fold_equals_per_bar_queries(series: BarSeries, batched) -> None:
    strategy, events = batched
    per_bar = ScoreReversion(forecast_config())  # a fresh strategy queried bar by bar (the paper path)
    engine = Engine(per_bar, BrokerConfig(fee_bps=1.0))
    engine.run(series.iter_bars())
    a = [(s.ts_ms, s.signal, s.threshold, s.model_version) for s in events.signals]
    b = [(s.ts_ms, s.signal, s.threshold, s.model_version) for s in engine.events.signals]
    assert len(a) == len(b) > 100
    for x, y in zip(a, b):
        assert x[0] == y[0] and x[2:] == y[2:] and x[1] == pytest.approx(y[1], rel=1e-12, abs=1e-15)
    assert events.trades == engine.events.trades and events.trades
    np.testing.assert_allclose(strategy.forecasts.low, per_bar.forecasts.low, rtol=1e-12)


def test_entries_beat_the_round_trip_cost_and_exits_come_at_the_horizon(series: BarSeries, batched) -> None:
    strategy, events = batched
    cost = strategy.config.round_trip_cost
    assert cost == pytest.approx(2 * 1.0 / 1e4)
    entries = [o for o in events.orders if o.reason == "entry"]
    assert entries
    for o in entries:
        move = math.expm1(o.signal)
        assert abs(move) > cost and (o.target_fraction > 0) == (move > 0)
    horizon = [t for t in events.trades if t.exit_reason == "horizon"]
    assert horizon, "the fixture must reach the horizon exit, or this test proves nothing"
    for t in horizon:  # filled at O_{t+1}, closed at O_{t+1+h}: the forecast's own span
        assert t.exit_ts_ms - t.entry_ts_ms == H * HOUR
    for t in events.trades:
        assert t.exit_ts_ms - t.entry_ts_ms <= H * HOUR
    lows, highs, means = (np.asarray(v) for v in (strategy.forecasts.low, strategy.forecasts.high,
                                                  strategy.forecasts.mean))
    assert np.all(lows < means) and np.all(means < highs)


def test_the_margin_removes_entries_and_sizing_caps_at_one(series: BarSeries, batched) -> None:
    strategy, events = batched
    cfg = dataclasses.replace(forecast_config(), cost_margin_pct=0.3)
    wide = run_backtest(series, ScoreReversion(cfg, fold_cache=strategy.fold_cache), BrokerConfig(fee_bps=1.0))
    n_wide = sum(o.reason == "entry" for o in wide.events.orders)
    assert n_wide < sum(o.reason == "entry" for o in events.orders)
    sized_cfg = dataclasses.replace(forecast_config(), size_by_confidence=True)
    sized = run_backtest(series, ScoreReversion(sized_cfg, fold_cache=strategy.fold_cache), BrokerConfig(fee_bps=1.0))
    fractions = [abs(o.target_fraction) for o in sized.events.orders if o.reason == "entry"]
    assert fractions and max(fractions) <= 1.0 and min(fractions) < 1.0


def test_forecast_folds_do_not_see_the_future(series: BarSeries, batched) -> None:
    strategy, events = batched
    cut = 27 * 24
    cut_ts = int(series.ts_ms[cut])
    other = ScoreReversion(forecast_config())
    res = run_backtest(perturb_after(series, cut), other, BrokerConfig(fee_bps=1.0))
    before = [f for f in strategy.folds if f.trade_start_ts <= cut_ts]
    before2 = [f for f in other.folds if f.trade_start_ts <= cut_ts]
    assert len(before) == len(before2) >= 2
    for a, b in zip(before, before2):
        assert a.checkpoint == b.checkpoint
    sig = [(s.ts_ms, s.signal) for s in events.signals if s.ts_ms <= cut_ts]
    assert sig == [(s.ts_ms, s.signal) for s in res.events.signals if s.ts_ms <= cut_ts]


def test_an_ensemble_stores_and_reloads_every_member(series: BarSeries) -> None:
    strategy = ScoreReversion(forecast_config(ensemble=2))
    run_backtest(series.take(slice(0, 24 * 27)), strategy, BrokerConfig(fee_bps=1.0))
    fold = strategy.folds[-1]
    assert len(fold.members) == 2
    assert fold.members[0].fast.score(np.zeros(7), 0.6).tolist() != fold.members[1].fast.score(np.zeros(7), 0.6).tolist()
    again = fold_from_checkpoint(fold.checkpoint)
    rows = np.random.default_rng(0).standard_normal((5, 6)) * 0.01
    keys = np.arange(5)
    a, b = fold.score_rows(rows, keys), again.score_rows(rows, keys)
    np.testing.assert_array_equal(a.signal, b.signal)
    np.testing.assert_array_equal(a.forecast_high, b.forecast_high)


def test_inpainting_forecasts_batch_equal_per_bar(series: BarSeries) -> None:
    short = series.take(slice(0, 24 * 23))
    cfg = forecast_config(method="inpaint")
    a = run_backtest(short, ScoreReversion(cfg), BrokerConfig(fee_bps=1.0)).events.signals
    eng = Engine(ScoreReversion(cfg), BrokerConfig(fee_bps=1.0))
    eng.run(short.iter_bars())
    b = eng.events.signals
    assert len(a) == len(b) > 20
    np.testing.assert_allclose([s.signal for s in a], [s.signal for s in b], rtol=1e-5, atol=1e-7)


def test_the_report_measures_the_forecast_against_what_happened(series: BarSeries, batched) -> None:
    from reporting.score_report import forecast_calibration, forward_open_returns, pinball

    strategy, _ = batched
    cal = forecast_calibration(strategy, series, None)
    y = forward_open_returns(series, H).reindex(strategy.forecasts.ts_ms).to_numpy()
    lo, hi = np.asarray(strategy.forecasts.low), np.asarray(strategy.forecasts.high)
    ok = np.isfinite(y)
    # climatology needs a quarter year of past targets: on 40 days of bars nothing is scored
    assert cal["n"] == 0 and cal["coverage"] is None and ok.sum() > 100
    assert pinball(np.array([1.0, -1.0]), np.array([0.0, 0.0]), 0.9) == pytest.approx((0.9 + 0.1) / 2)
    assert float(np.mean((y[ok] >= lo[ok]) & (y[ok] <= hi[ok]))) > 0.3  # the interval is not degenerate
