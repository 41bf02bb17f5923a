"""The walk-forward score strategy: no lookahead, batch scoring equals per-bar scoring, determinism."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine.broker import BrokerConfig
from engine.loop import Engine
from domain.series import BarSeries
from feeds.synthetic import synthetic_bars
from models.features import compute_features
from models.training import TrainConfig
from models.walk_forward import WalkForwardConfig
from strategies.score_reversion import ScoreReversion, ScoreReversionConfig

HOUR = 3_600_000


def tiny_config(seed: int = 0, **kw) -> ScoreReversionConfig:
    """Small, fast folds: 20-day windows, 5-day blocks, 120/30 Adam steps, no sample check."""
    train = TrainConfig(hidden=32, depth=2, max_steps=120, warm_start_steps=30, batch_size=256,
                        eval_every_steps=30, seed=seed)
    wf = WalkForwardConfig(train_days=20, retrain_days=5, threshold_quantile=0.9, sample_check_samples=0,
                           model_target="state", train=train)  # the state-signal rules (default is the forecast)
    return ScoreReversionConfig(walk_forward=wf, **kw)


def run(series: BarSeries, config: ScoreReversionConfig) -> tuple[ScoreReversion, Engine]:
    strategy = ScoreReversion(config)
    engine = Engine(strategy, BrokerConfig())
    engine.run(series.iter_bars())
    return strategy, engine


def perturb_after(series: BarSeries, index: int, seed: int = 99) -> BarSeries:
    """Replace every bar after ``index`` by unrelated (but valid) bars."""
    other = synthetic_bars(len(series), seed=seed, start_price=float(series.close[index]) * 1.3)
    cols = {}
    for name in ("open", "high", "low", "close", "volume"):
        col = getattr(series, name).copy()
        col[index + 1:] = getattr(other, name)[index + 1:]
        cols[name] = col
    return dataclasses.replace(series, **cols)


@pytest.fixture(scope="module")
def series() -> BarSeries:
    return synthetic_bars(24 * 45, seed=3)  # 45 days: 5 folds of 5 days after a 20-day window


@pytest.fixture(scope="module")
def baseline(series: BarSeries) -> tuple[ScoreReversion, Engine]:
    return run(series, tiny_config())


def test_folds_follow_the_time_schedule(series: BarSeries, baseline) -> None:
    strategy, engine = baseline
    first = int(series.ts_ms[0])
    starts = [f.trade_start_ts for f in strategy.folds]
    assert starts == [first + 20 * 24 * HOUR + k * 5 * 24 * HOUR for k in range(len(starts))]
    assert len(starts) == 5
    for f in strategy.folds:
        assert f.train_end_ts < f.trade_start_ts + HOUR  # trained on bars up to the block's first bar only
        assert f.trade_start_ts - f.train_start_ts <= 20 * 24 * HOUR
    assert engine.events.orders, "the fixture must trade, or the lookahead test proves nothing"


@pytest.mark.parametrize("cut_day", [22, 31, 38])
def test_changing_the_future_changes_nothing_before_it(series: BarSeries, baseline, cut_day: int) -> None:
    strategy, engine = baseline
    cut = cut_day * 24
    cut_ts = int(series.ts_ms[cut])
    strategy2, engine2 = run(perturb_after(series, cut), tiny_config())
    before = [f for f in strategy.folds if f.trade_start_ts <= cut_ts]
    before2 = [f for f in strategy2.folds if f.trade_start_ts <= cut_ts]
    assert len(before) == len(before2) >= 1
    for a, b in zip(before, before2):
        assert a.checkpoint == b.checkpoint and a.threshold == b.threshold
    sig = [(s.ts_ms, s.signal, s.threshold) for s in engine.events.signals if s.ts_ms <= cut_ts]
    sig2 = [(s.ts_ms, s.signal, s.threshold) for s in engine2.events.signals if s.ts_ms <= cut_ts]
    assert sig == sig2 and sig
    orders = [o for o in engine.events.orders if o.created_ts_ms <= cut_ts]
    orders2 = [o for o in engine2.events.orders if o.created_ts_ms <= cut_ts]
    assert orders == orders2
    later = [s.signal for s in engine.events.signals if s.ts_ms > cut_ts]
    later2 = [s.signal for s in engine2.events.signals if s.ts_ms > cut_ts]
    assert later != later2, "the perturbation must reach the signal, or this test proves nothing"


def test_batch_scoring_a_fold_equals_per_bar_queries(series: BarSeries, baseline) -> None:
    strategy, engine = baseline
    feats = compute_features(series.open, series.high, series.low, series.close, series.volume, strategy.spec)
    by_ts = {s.ts_ms: s for s in engine.events.signals}
    checked = 0
    for fold in strategy.folds:
        idx = np.nonzero((series.ts_ms >= fold.trade_start_ts) & (series.ts_ms < fold.trade_end_ts))[0]
        batch_signal, batch_norm = fold.signal(feats[idx])  # one call for the whole block
        for i, sig, norm in zip(idx, batch_signal, batch_norm):
            point = by_ts[int(series.ts_ms[i])]
            assert point.model_version == fold.fold_index
            assert point.signal == pytest.approx(float(sig), rel=1e-9, abs=1e-12)
            # the same ‖s‖ up to rounding: its rank in the training window may move by one place at most
            assert point.unusualness == pytest.approx(fold.unusualness(float(norm)),
                                                      abs=1.0 / len(fold.train_norms_sorted) + 1e-12)
            checked += 1
    assert checked == len(engine.events.signals)


def test_same_seed_same_trades_other_seed_other_models(series: BarSeries, baseline) -> None:
    strategy, engine = baseline
    strategy2, engine2 = run(series, tiny_config())
    assert [f.checkpoint for f in strategy.folds] == [f.checkpoint for f in strategy2.folds]
    assert engine.events.trades == engine2.events.trades
    strategy3, _ = run(series, tiny_config(seed=1))
    assert strategy3.folds[0].checkpoint != strategy.folds[0].checkpoint


def test_orders_carry_signal_threshold_and_model_version(baseline) -> None:
    _, engine = baseline
    entries = [o for o in engine.events.orders if o.reason == "entry"]
    assert entries
    for o in entries:
        assert o.signal is not None and o.threshold is not None and o.model_version is not None
        assert abs(o.signal) > o.threshold
        assert (o.target_fraction > 0) == (o.signal > 0)  # positive score on returns → long


def test_fold_cache_reuses_models_without_retraining(series: BarSeries, baseline) -> None:
    strategy, engine = baseline
    again = ScoreReversion(strategy.config, fold_cache=strategy.fold_cache)
    engine2 = Engine(again, BrokerConfig())
    engine2.run(series.iter_bars())
    assert [f is g for f, g in zip(strategy.folds, again.folds)] == [True] * len(strategy.folds)
    assert engine2.events.trades == engine.events.trades


def test_unusual_gate_only_removes_entries(series: BarSeries, baseline) -> None:
    strategy, engine = baseline
    gated = ScoreReversion(tiny_config(unusual_gate=0.5), fold_cache=strategy.fold_cache)
    engine2 = Engine(gated, BrokerConfig())
    engine2.run(series.iter_bars())
    n_gated = sum(o.reason == "entry" for o in engine2.events.orders)
    n_all = sum(o.reason == "entry" for o in engine.events.orders)
    assert n_gated < n_all
    unusual = {s.ts_ms: s.unusualness for s in engine2.events.signals}
    for o in engine2.events.orders:
        if o.reason == "entry":
            assert unusual[o.created_ts_ms] <= 0.5


def test_same_strategy_in_backtrader_makes_identical_trades(series: BarSeries, baseline) -> None:
    """The score strategy (with its resting stop orders) through backtrader's Cerebro, folds reused."""
    from engine.backtrader_adapter import run_in_backtrader

    strategy, _ = baseline
    tight = tiny_config(stop_loss_pct=0.5)  # a tight stop, so resting stop orders really fill
    native_run = Engine(ScoreReversion(tight, fold_cache=strategy.fold_cache), BrokerConfig())
    native = native_run.run(series.iter_bars())
    bt = run_in_backtrader(ScoreReversion(tight, fold_cache=strategy.fold_cache), series, BrokerConfig())
    reasons = {t.exit_reason for t in native.trades}
    assert {"stop", "signal"} <= reasons
    assert [(t.side, t.entry_ts_ms, t.exit_ts_ms, t.exit_reason) for t in bt.trades] == \
        [(t.side, t.entry_ts_ms, t.exit_ts_ms, t.exit_reason) for t in native.trades]
    for a, b in zip(bt.fills, native.fills):
        assert (a.ts_ms, a.side, a.reason) == (b.ts_ms, b.side, b.reason)
        assert a.qty == pytest.approx(b.qty, rel=1e-9) and a.price == pytest.approx(b.price, rel=1e-12)
    assert bt.equity_quote[-1] == pytest.approx(native.equity_quote[-1], rel=1e-9)
