"""Passive entries of the score strategy: the limit price, fills only when traded through, expiry,
the maker fee in the cost rule and at the fill, and the same trades inside backtrader."""
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
from app.registry import make_strategy
from strategies.score_reversion import ScoreReversion, ScoreReversionConfig

from .test_score_forecast import forecast_config

SCHEDULE = BrokerConfig(fee_bps=5.0, maker_fee_bps=2.0)
OFFSET_BPS, EXPIRY = 20.0, 3


def passive_config(**kw) -> ScoreReversionConfig:
    cfg = forecast_config(**kw)
    return dataclasses.replace(cfg, fee_bps=5.0, maker_fee_bps=2.0, entry_order="passive",
                               passive_offset_bps=OFFSET_BPS, passive_expiry_bars=EXPIRY)


@pytest.fixture(scope="module")
def series() -> BarSeries:
    return synthetic_bars(24 * 40, seed=5)


@pytest.fixture(scope="module")
def passive_run(series: BarSeries):
    strategy = ScoreReversion(passive_config())
    engine = Engine(strategy, SCHEDULE)
    strategy.prepare_backtest(series)
    engine.run(series.iter_bars())
    return strategy, engine


def score_config(params: dict) -> ScoreReversionConfig:
    return make_strategy("score", params).config


def test_the_cost_rule_counts_the_maker_fee_for_a_passive_entry() -> None:
    market = score_config({"fee_bps": 5.0, "maker_fee_bps": 2.0, "slippage_bps": 1.0, "entry_order": "market"})
    passive = score_config({"fee_bps": 5.0, "maker_fee_bps": 2.0, "slippage_bps": 1.0, "entry_order": "passive"})
    assert market.round_trip_cost == pytest.approx(2 * (5 + 1) / 1e4)
    assert passive.round_trip_cost == pytest.approx((2 + 5 + 1) / 1e4)  # maker entry, taker + slippage exit
    same = score_config({"fee_bps": 5.0, "entry_order": "passive"})  # no maker fee given: the taker fee
    assert same.round_trip_cost == pytest.approx(10 / 1e4)
    with pytest.raises(ValueError, match="entry_order"):
        dataclasses.replace(market, entry_order="iceberg")
    with pytest.raises(ValueError, match="passive_expiry_bars"):
        dataclasses.replace(market, passive_expiry_bars=0)


def test_a_passive_entry_fills_only_when_a_later_bar_trades_through_and_expires_otherwise(
        series: BarSeries, passive_run) -> None:
    """Every entry checked by hand against the bars: the limit sits OFFSET_BPS through the signal
    bar's close; it fills on the first of bars t+1..t+EXPIRY whose low (long) / high (short) reaches
    it, at the limit or at a better open, paying the maker fee unless marketable at once; else it expires."""
    strategy, engine = passive_run
    events = engine.events
    index = {int(t): i for i, t in enumerate(series.ts_ms)}
    fills = {f.order_id: f for f in events.fills}
    status = engine.broker.status
    cost = strategy.config.round_trip_cost
    entries = [o for o in events.orders if o.reason == "entry"]
    outcomes = {"filled": 0, "expired": 0, "maker": 0}
    for o in entries:
        t = index[o.created_ts_ms]
        long = o.target_fraction > 0
        assert o.price == pytest.approx(series.close[t] * (1 - OFFSET_BPS / 1e4 if long else 1 + OFFSET_BPS / 1e4),
                                        rel=1e-15)
        assert abs(math.expm1(o.signal)) > cost and long == (o.signal > 0)
        assert o.expire_after_bars == EXPIRY
        hit = None
        for j in range(t + 1, min(t + 1 + EXPIRY, len(series))):
            if (series.low[j] <= o.price) if long else (series.high[j] >= o.price):
                hit = j
                break
        if hit is None:
            if t + EXPIRY < len(series) - 1:
                assert status[o.client_id] == "expired" and o.client_id not in fills
                outcomes["expired"] += 1
            continue
        f = fills[o.client_id]
        assert f.ts_ms == int(series.ts_ms[hit])
        gapped = (series.open[hit] <= o.price) if long else (series.open[hit] >= o.price)
        assert f.price == (series.open[hit] if gapped else o.price)
        maker = not (gapped and hit == t + 1)
        assert f.liquidity.value == ("maker" if maker else "taker")
        rate = (2.0 if maker else 5.0) / 1e4
        assert f.fee_quote == pytest.approx(f.qty * f.price * rate, rel=1e-12)
        outcomes["filled"] += 1
        outcomes["maker"] += maker
    # the check has teeth: entries that filled as makers and entries that expired untouched
    assert outcomes["filled"] >= 5 and outcomes["maker"] >= 5 and outcomes["expired"] >= 3, outcomes
    # while an entry rests no other is placed: entries are at least one bar past the previous one's end
    times = sorted(index[o.created_ts_ms] for o in entries)
    assert all(b > a for a, b in zip(times, times[1:]))


def test_passive_entries_batch_equal_per_bar_and_change_the_trades(series: BarSeries, passive_run) -> None:
    strategy, engine = passive_run
    per_bar = ScoreReversion(passive_config(), fold_cache=strategy.fold_cache)
    other = Engine(per_bar, SCHEDULE)
    other.run(series.iter_bars())
    assert other.events.trades == engine.events.trades and engine.events.trades
    market = run_backtest(series, ScoreReversion(dataclasses.replace(passive_config(), entry_order="market"),
                                                 fold_cache=strategy.fold_cache), SCHEDULE)
    assert [t.entry_ts_ms for t in market.events.trades] != [t.entry_ts_ms for t in engine.events.trades]


def test_passive_score_strategy_makes_identical_trades_in_backtrader(series: BarSeries, passive_run) -> None:
    """Passive entries with their bracket stops, expiry and the maker/taker schedule, through Cerebro."""
    from engine.backtrader_adapter import run_in_backtrader
    from tests.test_backtrader_parity import assert_same_run

    strategy, _ = passive_run
    cfg = dataclasses.replace(passive_config(), stop_loss_pct=0.8)  # tight: bracket stops really fill
    native = Engine(ScoreReversion(cfg, fold_cache=strategy.fold_cache), SCHEDULE)
    native.run(series.iter_bars())
    bt = run_in_backtrader(ScoreReversion(cfg, fold_cache=strategy.fold_cache), series, SCHEDULE)
    assert_same_run(native, bt)
    fills = native.events.fills
    statuses = list(native.broker.status.values())
    assert sum(f.reason == "entry" and f.liquidity.value == "maker" for f in fills) >= 5
    assert sum(f.reason == "stop" for f in fills) >= 1 and statuses.count("expired") >= 3
    assert np.isfinite(native.events.equity_quote[-1])
