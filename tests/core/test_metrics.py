"""Golden metrics on fixed bars (backtesting.py's test_compute_stats, STYLE.md §14), and the typed result.

Six daily bars, 1 % fee, 10,100 cash. The script buys all-in, sells, then buys again and
holds to the end, so the run has one closed round trip and one open position. Every
expected value below is worked out by hand from the candle table, not by the code.
"""
from __future__ import annotations

import json
import math
import statistics

import pytest

from engine.backtest import measure
from engine.broker import BrokerConfig
from engine.loop import Engine
from engine.metrics import (METRIC_KEYS, METRIC_SPECS, BuyAndHoldInputs, Metrics, buy_and_hold, buy_and_hold_curve,
                            compute_metrics, drawdown, max_drawdown)
from domain.types import Bar
from domain.series import BarSeries
from tests.core.helpers import Scripted

DAY_MS = 86_400_000
CASH = 10_100.0
# (open, close); high/low only bracket them (no stop/limit orders here)
CANDLES = [(100.0, 100.0), (100.0, 110.0), (110.0, 99.0), (99.0, 105.0), (99.0, 90.0), (90.0, 108.0)]
SCRIPT = {0: [("target", 1.0, "entry")], 2: [("close", "exit")], 3: [("target", 1.0, "entry")]}

# The hand ledger (fills at the next bar's open, fee = 1 % of notional):
#  bar 1: buy q1 = 10,100 / (100 × 1.01) = 100 at 100 → fee 100, cash 0
#  bar 3: sell 100 at 99 → fee 99, cash 9,801; the round trip's P&L: −100 gross − 199 fees = −299,
#         −2.99 % of its 10,000 entry notional
#  bar 4: buy q2 = 9,801 / (99 × 1.01) at 99 → fee 0.01 × 99 q2, cash 0; held to the end (open)
Q2 = 9_801.0 / (99.0 * 1.01)
EQUITY = [10_100.0, 11_000.0, 9_900.0, 9_801.0, 90.0 * Q2, 108.0 * Q2]
POSITION = [0.0, 100.0, 100.0, 0.0, Q2, Q2]
BARS_PER_YEAR = 365.0


def golden_series() -> BarSeries:
    bars = [Bar(i * DAY_MS, o, max(o, c), min(o, c), c, 1.0) for i, (o, c) in enumerate(CANDLES)]
    return BarSeries.from_bars(bars, DAY_MS, "golden")


def golden_result():
    series = golden_series()
    config = BrokerConfig(cash_quote=CASH, fee_bps=100.0)
    engine = Engine(Scripted(SCRIPT), config)
    events = engine.run(series.iter_bars())
    return measure(series, events, engine.broker.status, config)


def hand_ratios(equity: list[float]) -> dict[str, float]:
    """Sharpe, Sortino, volatility and CAGR of a curve that starts from CASH, by the textbook formulas."""
    rets = [e / p - 1.0 for p, e in zip([CASH] + equity[:-1], equity)]
    mean, std = statistics.mean(rets), statistics.stdev(rets)  # sample std (ddof 1)
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in rets) / len(rets))
    cagr = (equity[-1] / CASH) ** (BARS_PER_YEAR / len(equity)) - 1.0
    return {"volatility": std * math.sqrt(365), "sharpe": mean / std * math.sqrt(365),
            "sortino": mean / downside * math.sqrt(365), "cagr": cagr}


def test_golden_metrics_of_the_strategy() -> None:
    result = golden_result()
    assert result.events.equity_quote == pytest.approx(EQUITY, rel=1e-12)  # the ledger above
    m = result.metrics
    assert isinstance(m, Metrics)
    ratios = hand_ratios(EQUITY)
    deepest = 90.0 * Q2 / 11_000.0 - 1.0  # peak 11,000 at bar 1, trough at bar 4
    expected = {
        "bars": 6, "final_equity": 108.0 * Q2, "total_return": 108.0 * Q2 / CASH - 1.0,
        "cagr": ratios["cagr"], "volatility": ratios["volatility"], "sharpe": ratios["sharpe"],
        "sortino": ratios["sortino"], "max_drawdown": deepest,
        "max_drawdown_bars": 4, "max_drawdown_days": 4.0,  # bars 2-5 under the 11,000 peak; daily bars
        "calmar": ratios["cagr"] / -deepest,
        "trades": 1, "win_rate": 0.0, "profit_factor": 0.0,  # no winning trade: 0 / 299
        "avg_trade": -299.0, "avg_trade_pct": -2.99,
        "open_trade": 1, "open_position_qty": Q2, "exposure": 4 / 6,
        "fees_paid": 100.0 + 99.0 + 0.99 * Q2, "turnover": (10_000.0 + 9_900.0 + 99.0 * Q2) / CASH,
        "equity_floor_hit": False, "equity_floor_ts": None,  # equity stayed above zero
    }
    assert set(expected) == set(METRIC_KEYS)  # the golden table covers every field
    for key, value in expected.items():
        assert m[key] == (value if value is None or isinstance(value, int) else pytest.approx(value, rel=1e-12)), key
        assert getattr(m, key) == m[key]


def test_golden_metrics_of_buy_and_hold_on_the_same_bars() -> None:
    bh = golden_result().baseline
    # all in at bar 1's open: q = 10,100 / (100 × 1.01) = 100, fee 100, cash 0; marked at the closes
    curve = [CASH, 11_000.0, 9_900.0, 10_500.0, 9_000.0, 10_800.0]
    assert list(bh.curve.equity_quote) == pytest.approx(curve, rel=1e-12)
    assert bh.curve.fee_quote == pytest.approx(100.0, rel=1e-12)
    assert bh.curve.inputs == BuyAndHoldInputs(CASH, 100.0, 0.0, 100.0, DAY_MS)
    m = bh.metrics
    ratios = hand_ratios(curve)
    assert (m.trades, m.open_trade, m.bars, m.max_drawdown_bars) == (0, 1, 6, 4)
    assert m.open_position_qty == pytest.approx(100.0, rel=1e-12)
    assert m.exposure == pytest.approx(5 / 6) and m.turnover == 1.0  # the whole cash committed
    assert m.fees_paid == pytest.approx(100.0, rel=1e-12)
    assert m.final_equity == pytest.approx(10_800.0, rel=1e-12)
    assert m.max_drawdown == pytest.approx(9_000.0 / 11_000.0 - 1.0, rel=1e-12)
    for key in ("sharpe", "sortino", "volatility", "cagr"):
        assert m[key] == pytest.approx(ratios[key], rel=1e-12), key
    assert (m.win_rate, m.profit_factor, m.avg_trade, m.avg_trade_pct) == (None, None, None, None)


def test_buy_and_hold_curve_is_the_engine_running_buy_and_hold_exactly() -> None:
    """The baseline's arithmetic is the broker's (sizing, BpsFee), so the two curves agree to the bit."""
    series = golden_series()
    config = BrokerConfig(cash_quote=CASH, fee_bps=37.0, slippage_bps=11.0)
    events = Engine(Scripted({0: [("target", 1.0, "entry")]}), config).run(series.iter_bars())
    inputs = BuyAndHoldInputs.of_bars(series.ts_ms, series.open, CASH, 37.0, 11.0)
    curve = buy_and_hold_curve(series.close, inputs)
    assert list(curve.equity_quote) == events.equity_quote
    assert curve.fee_quote == events.fills[0].fee_quote


def test_metrics_round_trip_through_json_and_read_like_the_stored_dict() -> None:
    m = golden_result().metrics
    stored = json.loads(json.dumps(m.to_dict()))
    assert Metrics.from_dict(stored) == m
    assert dict(m) == m.to_dict() and list(m) == list(METRIC_KEYS)
    assert m.get("no_such_metric") is None and "sharpe" in m
    with pytest.raises(KeyError):
        m["no_such_metric"]
    old = Metrics.from_dict({"total_return": 0.1, "trades": 3.0, "legacy_extra": 1})  # an older stored row
    assert old.trades == 3 and isinstance(old.trades, int) and old.sharpe is None


def test_every_field_has_a_label_and_a_known_format() -> None:
    kinds = {"pct", "pct100", "ratio", "int", "money", "qty", "days", "time"}
    assert [s.key for s in METRIC_SPECS] == list(METRIC_KEYS)
    assert all(s.label and s.kind in kinds for s in METRIC_SPECS)


def test_drawdown_is_the_one_behind_max_drawdown() -> None:
    curve = [100.0, 110.0, 99.0, 120.0, 90.0, 95.0]
    dd = drawdown(curve, 105.0)
    assert list(dd) == pytest.approx([100 / 105 - 1, 0.0, 99 / 110 - 1, 0.0, 90 / 120 - 1, 95 / 120 - 1])
    assert dd.min() == max_drawdown([105.0] + curve)[0]
    assert compute_metrics(curve, [], 365, 105.0).max_drawdown == dd.min()


def test_buy_and_hold_with_one_bar_never_buys() -> None:
    bh = buy_and_hold([100.0], BuyAndHoldInputs.of_bars([0], [100.0], CASH, 10.0), 365)
    assert list(bh.curve.equity_quote) == [CASH] and bh.metrics.fees_paid == 0.0 and bh.metrics.open_trade == 0
