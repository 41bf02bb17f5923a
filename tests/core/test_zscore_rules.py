"""DESIGN.md's z-score baseline, re-implemented here in plain numpy, against ZScoreReversion on the Engine.

The rules (DESIGN.md "The z-score baseline, exactly"):
- r_t = ln(C_t / C_{t-1}); z_t = (r_t − mean) / std over the last 50 returns including r_t, ddof = 0;
  defined from the 51st bar on (bar index 50);
- decided at the close of bar t on the position held after bar t's fills:
  flat & z < −2 → long at O_{t+1}; flat & z > 2 → short at O_{t+1};
  long & z > 0 → close at O_{t+1}; short & z < 0 → close at O_{t+1};
- size q = cash / (O_{t+1} (1 + fee)), same notional for shorts; fee 0.1 % per fill; cash 100,000;
- final equity = cash + q · C_last (no exit fee on an open position).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from engine.broker import BrokerConfig
from engine.loop import Engine
from feeds.synthetic import synthetic_bars
from strategies.zscore import ZScoreConfig, ZScoreReversion

FEE = 0.001
CASH = 100_000.0


@dataclass
class RefTrade:
    side: str
    entry_index: int
    exit_index: int | None
    entry_price: float
    exit_price: float | None
    pnl: float | None


def zscores(close: np.ndarray, window: int = 50) -> np.ndarray:
    """z_t for every bar (NaN where undefined), straight from the definition."""
    r = np.full(len(close), np.nan)
    r[1:] = np.log(close[1:] / close[:-1])
    z = np.full(len(close), np.nan)
    for t in range(window, len(close)):
        last = r[t - window + 1: t + 1]  # the last `window` returns, r_t included
        z[t] = (r[t] - last.mean()) / last.std(ddof=0)
    return z


def reference(open_: np.ndarray, close: np.ndarray, window: int = 50, entry_z: float = 2.0):
    """A plain loop over bars: fills at the open, then the decision at the close."""
    z = zscores(close, window)
    cash, q, pending = CASH, 0.0, None  # q signed
    trades: list[RefTrade] = []
    entry_cash = 0.0
    for t in range(len(close)):
        if pending is not None:  # decided at close t−1, filled at O_t
            price = open_[t]
            if pending == "close":
                fee = abs(q) * price * FEE
                cash += q * price - fee  # sell a long (q > 0) or buy back a short (q < 0)
                tr = trades[-1]
                tr.exit_index, tr.exit_price = t, price
                tr.pnl = cash - entry_cash
                q = 0.0
            else:
                size = cash / (price * (1 + FEE))
                entry_cash = cash
                q = size if pending == "long" else -size
                cash -= q * price + size * price * FEE
                trades.append(RefTrade(pending, t, None, price, None, None))
            pending = None
        if np.isnan(z[t]) or t == len(close) - 1:
            continue
        if q == 0.0:
            if z[t] < -entry_z:
                pending = "long"
            elif z[t] > entry_z:
                pending = "short"
        elif q > 0 and z[t] > 0:
            pending = "close"
        elif q < 0 and z[t] < 0:
            pending = "close"
    return trades, cash + q * close[-1], z


@pytest.mark.parametrize("seed,n", [(0, 3000), (1, 3000), (11, 2000), (42, 4000)])
def test_zscore_strategy_matches_the_plain_numpy_rules(seed: int, n: int) -> None:
    series = synthetic_bars(n, seed=seed)
    ref_trades, ref_equity, z = reference(series.open, series.close)
    engine = Engine(ZScoreReversion(ZScoreConfig()), BrokerConfig(cash_quote=CASH, fee_bps=10.0, slippage_bps=0.0))
    events = engine.run(list(series))

    assert len(ref_trades) >= 10  # enough entries to make the comparison meaningful
    ts = series.ts_ms
    entries = [f for f in events.fills if f.reason == "entry"]
    assert len(entries) == len(ref_trades)  # DESIGN.md: "Trades: the number of entries"
    closed = [r for r in ref_trades if r.exit_index is not None]
    got = [(t.side, t.entry_ts_ms, t.exit_ts_ms) for t in events.trades]
    want = [(r.side, int(ts[r.entry_index]), int(ts[r.exit_index])) for r in closed]
    assert got == want
    # trade prices are qty-weighted averages (notional / qty), so equal to the open up to rounding
    assert [t.entry_price for t in events.trades] == pytest.approx([r.entry_price for r in closed], rel=1e-12)
    assert [t.exit_price for t in events.trades] == pytest.approx([r.exit_price for r in closed], rel=1e-12)
    assert [f.price for f in events.fills] == [float(series.open[int(np.searchsorted(ts, f.ts_ms))])
                                               for f in events.fills]  # fills exactly at the open
    assert [t.pnl_quote for t in events.trades] == pytest.approx([r.pnl for r in closed], rel=1e-9)
    assert events.equity_quote[-1] == pytest.approx(ref_equity, rel=1e-9)
    # the engine records the same z it decided on, from the 51st bar on
    assert events.signals[0].ts_ms == ts[50]
    np.testing.assert_allclose([s.signal for s in events.signals], z[50:], rtol=1e-7, atol=1e-9)
    # an exit leaves the book flat for at least one close: no entry fills at the bar of an exit
    exit_ts = {t.exit_ts_ms for t in events.trades}
    assert not exit_ts & {f.ts_ms for f in entries}


def test_reference_is_not_vacuous_on_a_hand_made_series() -> None:
    # 50 alternating ±0.1 % returns, then a −5 % bar (z ≪ −2 → long), then +3 % (z > 0 → close)
    close = [100.0]
    for i in range(50):
        close.append(close[-1] * (1.001 if i % 2 == 0 else 0.999))
    close += [close[-1] * 0.95, close[-1] * 0.95 * 1.03, close[-1] * 0.95 * 1.03]
    close_a = np.array(close)
    open_a = np.concatenate(([100.0], close_a[:-1]))
    trades, equity, z = reference(open_a, close_a)
    assert z[51] < -2 and z[52] > 0
    assert [(t.side, t.entry_index, t.exit_index) for t in trades] == [("long", 52, 53)]
    # long q = 100000 / (O52 × 1.001) bought at O52 = C51, sold at O53 = C52 (3 % higher), two fees
    q = CASH / (close_a[51] * 1.001)
    assert equity == pytest.approx(q * close_a[52] * 0.999, rel=1e-12)
