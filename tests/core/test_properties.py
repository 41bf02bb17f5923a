"""Properties of the engine that hold for any input (STYLE.md §14), checked on seeded random cases."""
from __future__ import annotations

import math
import random
import statistics

import numpy as np
import pytest

from engine.broker import BrokerConfig
from engine.loop import Engine, EngineEvents
from engine.metrics import bars_per_year, buy_and_hold_equity, compute_metrics, max_drawdown
from engine.portfolio import Portfolio
from domain.types import Bar, Side
from feeds.synthetic import synthetic_bars
from strategies.buy_and_hold import BuyAndHold
from strategies.zscore import ZScoreConfig, ZScoreReversion
from tests.core.helpers import CallbackStrategy, Scripted, flat_bars, make_trade, run


# ---- (a) a round trip at a constant price loses exactly the fees ----------------------------------
@pytest.mark.parametrize("seed", range(40))
def test_round_trip_at_constant_price_loses_exactly_the_fees(seed: int) -> None:
    rng = random.Random(seed)
    price = rng.choice([0.37, 1.0, 97.13, 20_000.0, 68_123.45])
    fee_bps = rng.choice([0.0, 1.0, 2.5, 10.0, 7.77, 30.0])
    cash = rng.uniform(1_000, 1_000_000)
    if rng.random() < 0.5:  # absolute size, long or short
        side = rng.choice(["buy", "sell"])
        qty = rng.uniform(0.001, 0.9) * cash / price
        script = {0: [("market", side, qty, "entry")], 2: [("close", "exit")]}
    else:  # all-in (or part) via target_percent, long or short
        fraction = rng.choice([-1.0, -0.3, 0.5, 1.0])
        qty = abs(fraction) * cash / (price * (1 + fee_bps / 10_000))
        script = {0: [("target", fraction, "entry")], 2: [("close", "exit")]}
    engine, events = run(Scripted(script), flat_bars(5, price), cash_quote=cash, fee_bps=fee_bps)
    fees = 2 * qty * price * fee_bps / 10_000  # entry fee + exit fee, nothing else
    assert engine.portfolio.position_qty == 0.0
    assert engine.portfolio.cash_quote == pytest.approx(cash - fees, rel=1e-12)
    assert events.equity_quote[-1] == pytest.approx(cash - fees, rel=1e-12)
    (trade,) = events.trades
    assert trade.gross_pnl_quote == pytest.approx(0.0, abs=1e-9 * cash)
    assert trade.fees_quote == pytest.approx(fees, rel=1e-12)
    assert trade.pnl_quote == pytest.approx(-fees, rel=1e-9, abs=1e-9 * cash)


# ---- (b) no lookahead -------------------------------------------------------------------------------
def _perturb_after(bars: list[Bar], t: int, seed: int) -> list[Bar]:
    """Same bars up to index t; every later bar replaced by a different, still valid candle."""
    rng = np.random.default_rng(seed)
    out = list(bars[: t + 1])
    for b in bars[t + 1:]:
        a, c = np.exp(rng.normal(0.0, 0.02, size=2))
        o, cl = b.open * a, b.close * c
        h = max(o, cl) * (1 + abs(rng.normal(0, 0.003)))
        lo = min(o, cl) * (1 - abs(rng.normal(0, 0.003)))
        out.append(Bar(b.ts_ms, o, h, lo, cl, b.volume * 2))
    return out


def _zscore_run(bars: list[Bar]) -> EngineEvents:
    return Engine(ZScoreReversion(ZScoreConfig(window=20, entry_z=1.5))).run(bars)


def _decisions(events: EngineEvents, ts_ms: int) -> tuple:
    orders = [o for o in events.orders if o.created_ts_ms <= ts_ms]
    signals = [s for s in events.signals if s.ts_ms <= ts_ms]
    fills = [f for f in events.fills if f.ts_ms <= ts_ms]
    n_eq = sum(1 for t in events.equity_ts_ms if t <= ts_ms)
    return orders, signals, fills, events.equity_quote[:n_eq]


@pytest.mark.parametrize("t", [25, 60, 130, 211, 298])
def test_changing_bars_after_t_leaves_decisions_up_to_t_unchanged(t: int) -> None:
    bars = list(synthetic_bars(300, seed=7))
    base = _zscore_run(bars)
    perturbed = _zscore_run(_perturb_after(bars, t, seed=t))
    cutoff = bars[t].ts_ms
    assert _decisions(perturbed, cutoff) == _decisions(base, cutoff)
    # the perturbation is real: something after t changed (so this test can fail)
    assert [s.signal for s in perturbed.signals if s.ts_ms > cutoff] != [s.signal for s in base.signals
                                                                      if s.ts_ms > cutoff] or t == 299


def test_lookahead_fixture_has_decisions_to_compare() -> None:
    events = _zscore_run(list(synthetic_bars(300, seed=7)))
    cutoff = synthetic_bars(300, seed=7).ts_ms[130]
    assert sum(1 for o in events.orders if o.created_ts_ms <= cutoff) >= 2
    assert sum(1 for f in events.fills if f.ts_ms <= cutoff) >= 2


# ---- (c) replaying fills reproduces the portfolio ----------------------------------------------------
def _random_trader(seed: int):
    rng = random.Random(seed)

    def act(i: int, bar: Bar, ctx) -> None:  # noqa: ANN001
        u = rng.random()
        if u < 0.15:
            ctx.target_percent(rng.choice([-1.0, -0.5, 0.25, 0.7, 1.0]), "target")
        elif u < 0.25:
            ctx.market(rng.choice(list(Side)), rng.uniform(0.01, 2.0), "market")
        elif u < 0.32:
            ctx.close("close")
        elif u < 0.40 and ctx.position_qty != 0.0:
            side = Side.SELL if ctx.position_qty > 0 else Side.BUY
            sign = -1 if side is Side.SELL else 1
            ctx.stop(side, bar.close * (1 + sign * 0.01), "stop", oco_group=f"g{i}")
            ctx.limit(side, bar.close * (1 - sign * 0.01), "target", oco_group=f"g{i}")
        elif u < 0.43:
            ctx.cancel_all()

    return CallbackStrategy(act)


@pytest.mark.parametrize("seed", range(6))
def test_replaying_fills_reproduces_cash_position_and_trades(seed: int) -> None:
    series = synthetic_bars(400, seed=seed)
    bars = list(series)
    strategy = _random_trader(seed) if seed % 2 == 0 else ZScoreReversion(ZScoreConfig(window=20, entry_z=1.5))
    engine = Engine(strategy, BrokerConfig(cash_quote=50_000.0, fee_bps=7.5, slippage_bps=3.0))
    events = engine.run(bars)
    assert len(events.fills) >= 10 and len(events.trades) >= 3  # enough to be a real check

    index_of = {b.ts_ms: i for i, b in enumerate(bars)}
    replay = Portfolio(50_000.0)
    trades = [tr for f in events.fills if (tr := replay.apply(f, index_of[f.ts_ms])) is not None]
    live = engine.portfolio
    assert replay.cash_quote == live.cash_quote
    assert replay.position_qty == live.position_qty
    assert replay.avg_entry_price == live.avg_entry_price
    assert replay.fees_paid_quote == live.fees_paid_quote
    assert trades == events.trades == live.trades
    # and cash is exactly the fills' cash flows, independently of the Portfolio code
    flows = math.fsum(-f.signed_qty * f.price - f.fee_quote for f in events.fills)
    assert live.cash_quote == pytest.approx(50_000.0 + flows, rel=1e-12)
    assert live.position_qty == pytest.approx(math.fsum(f.signed_qty for f in events.fills), abs=1e-9)
    # each mark is cash + qty × close
    for cash, pos, close, eq in zip(events.equity_cash, events.equity_position, events.equity_close,
                                    events.equity_quote):
        assert eq == cash + pos * close


# ---- (d) metrics --------------------------------------------------------------------------------------
def test_bars_per_year() -> None:
    assert bars_per_year(3_600_000) == 8_760
    assert bars_per_year(60_000) == 525_600
    assert bars_per_year(86_400_000) == 365
    with pytest.raises(ValueError):
        bars_per_year(0)


def test_compute_metrics_on_a_hand_made_curve() -> None:
    # start 100; bar returns +10 %, −10 %, +10 %, +10 %, −10 %
    equity = [110.0, 99.0, 108.9, 119.79, 107.811]
    trades = [make_trade(30.0, 3.0), make_trade(-10.0, -1.0), make_trade(20.0, 2.0), make_trade(-5.0, -0.5)]
    m = compute_metrics(equity, trades, bars_per_year=8_760, initial_cash_quote=100.0,
                        position_qty=[0.0, 1.0, 1.0, 0.0, 1.0], fees_paid_quote=3.5, turnover_quote=250.0)
    # mean 0.02; deviations .08, −.12, .08, .08, −.12 → sample variance (3×.0064 + 2×.0144)/4 = .012
    sharpe = 0.02 / math.sqrt(0.012) * math.sqrt(8_760)
    # downside deviation: sqrt((.01 + .01) / 5) = sqrt(.004)
    sortino = 0.02 / math.sqrt(0.004) * math.sqrt(8_760)
    cagr = 1.07811 ** (8_760 / 5) - 1
    assert m["bars"] == 5
    assert m["final_equity"] == pytest.approx(107.811)
    assert m["total_return"] == pytest.approx(0.07811)
    assert m["volatility"] == pytest.approx(math.sqrt(0.012) * math.sqrt(8_760))
    assert m["sharpe"] == pytest.approx(sharpe)
    assert m["sortino"] == pytest.approx(sortino)
    assert m["cagr"] == pytest.approx(cagr)
    # peaks 100, 110, 110, 110, 119.79, 119.79: deepest fall −10 % (99 vs 110, also 107.811 vs 119.79);
    # longest run under water: bars 99 and 108.9 = 2 bars
    assert m["max_drawdown"] == pytest.approx(-0.10)
    assert m["max_drawdown_bars"] == 2
    assert m["max_drawdown_days"] == pytest.approx(2 * 365 / 8_760)
    assert m["calmar"] == pytest.approx(cagr / 0.10)
    assert m["trades"] == 4
    assert m["win_rate"] == pytest.approx(0.5)
    assert m["profit_factor"] == pytest.approx(50 / 15)
    assert m["avg_trade"] == pytest.approx(35 / 4)
    assert m["avg_trade_pct"] == pytest.approx(3.5 / 4)
    assert m["exposure"] == pytest.approx(0.6)
    assert m["fees_paid"] == 3.5
    assert m["turnover"] == pytest.approx(2.5)


def test_sharpe_annualisation_uses_the_bars_timeframe() -> None:
    equity = [100.3, 99.9, 100.4, 99.8, 100.2, 100.001]  # ends ~flat, so CAGR stays finite for 1m bars
    rets = [e / p - 1 for p, e in zip([100.0] + equity[:-1], equity)]
    per_bar = statistics.mean(rets) / statistics.stdev(rets)
    for tf_ms, n_year in ((3_600_000, 8_760), (86_400_000, 365), (60_000, 525_600)):
        m = compute_metrics(equity, [], bars_per_year(tf_ms), 100.0)
        assert m["sharpe"] == pytest.approx(per_bar * math.sqrt(n_year))


def test_cagr_of_a_short_minute_run_does_not_crash() -> None:
    # +2 % over 6 one-minute bars: annualised growth 1.02 ** 87,600 is beyond any float
    m = compute_metrics([100.5, 101.0, 101.2, 101.5, 101.8, 102.0], [], bars_per_year(60_000), 100.0)
    assert m["total_return"] == pytest.approx(0.02)
    assert m["cagr"] is None or m["cagr"] == math.inf
    assert m["sharpe"] is not None


def test_undefined_ratios_are_none() -> None:
    m = compute_metrics([100.0, 100.0, 100.0], [make_trade(5.0)], 8_760, 100.0)
    assert m["sharpe"] is None and m["sortino"] is None and m["calmar"] is None
    assert m["max_drawdown"] == 0.0 and m["max_drawdown_bars"] == 0
    assert m["profit_factor"] is None and m["win_rate"] == 1.0
    assert compute_metrics([], [], 8_760, 100.0)["total_return"] == 0.0


def test_max_drawdown_counts_the_longest_run_under_water() -> None:
    # peaks 10 10 10 10 12 12 12 12 ; under water at 9, 8, 9.5 (run 3) and 11, 11.9 (run 2)
    dd, bars = max_drawdown(np.array([10, 9, 8, 9.5, 12, 11, 11.9, 12.0]))
    assert dd == pytest.approx(-0.2) and bars == 3


@pytest.mark.parametrize("fee_bps,slippage_bps", [(10.0, 0.0), (0.0, 0.0), (25.0, 12.0)])
def test_buy_and_hold_equity_equals_the_strategy_through_the_engine(fee_bps: float, slippage_bps: float) -> None:
    series = synthetic_bars(500, seed=3)
    events = Engine(BuyAndHold(), BrokerConfig(cash_quote=100_000.0, fee_bps=fee_bps,
                                               slippage_bps=slippage_bps)).run(list(series))
    expected = buy_and_hold_equity(series.open, series.close, 100_000.0, fee_bps, slippage_bps)
    assert len(events.fills) == 1 and events.fills[0].ts_ms == series.ts_ms[1]
    np.testing.assert_allclose(events.equity_quote, expected, rtol=1e-12)
    # and both equal the hand formula: q = cash / (O1' (1 + fee)), equity_t = q × C_t (all cash spent)
    price = series.open[1] * (1 + slippage_bps / 10_000)
    q = 100_000.0 / (price * (1 + fee_bps / 10_000))
    np.testing.assert_allclose(expected[1:], q * series.close[1:], rtol=1e-9)
    assert expected[0] == 100_000.0
