"""backtrader as an independent oracle: the same strategy objects must make the same trades there.

Also an independent plain reference of DESIGN.md's z-score rules (numpy z-scores, a
bare loop for the book), so a bug shared by our engine and the adapter cannot hide.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from engine.backtrader_adapter import BacktraderRun, run_in_backtrader
from engine.broker import BrokerConfig
from engine.loop import Engine, EngineEvents
from domain.types import Side
from feeds.files import load_bars
from domain.series import BarSeries
from feeds.synthetic import synthetic_bars
from strategies.base import Strategy
from strategies.buy_and_hold import BuyAndHold
from strategies.zscore import RollingZScore, ZScoreConfig, ZScoreReversion
from tests.core.passive import AllInShortEveryBar, PassiveBracket

REL = 1e-9
REAL_1H = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "btcusdt_1h_binance_2017-2026.csv.gz"


# ---- small strategies that exercise stop / limit / OCO / explicit quantities ----------------------
class Bracketed(Strategy):
    """Enter on |z| > 1.5 at 80 % of equity with a protective stop and a take-profit (OCO), max hold 24."""

    name = "bracketed"

    def __init__(self, oco: bool = True) -> None:
        self.oco = oco

    def on_start(self, ctx) -> None:
        self._z = RollingZScore(50)
        self._prev: float | None = None

    def on_bar(self, bar, ctx) -> None:
        prev, self._prev = self._prev, bar.close
        z = None if prev is None else self._z.update(math.log(bar.close / prev))
        if z is None:
            return
        if ctx.position_qty == 0.0 and not ctx.pending_orders:
            long = z < -1.5
            if long or (z > 1.5 and not ctx.config.long_only):
                ctx.target_percent(0.8 if long else -0.8, "entry")
                exit_side, k = (Side.SELL, 1.0) if long else (Side.BUY, -1.0)
                group = f"bracket{bar.ts_ms}" if self.oco else None
                ctx.stop(exit_side, bar.close * (1 - k * 0.01), "stop", oco_group=group)
                ctx.limit(exit_side, bar.close * (1 + k * 0.015), "take", oco_group=group)
        elif ctx.position_qty != 0.0 and ctx.bars_in_position >= 24:
            ctx.cancel_all()
            ctx.close("max_hold")


class Scaler(Strategy):
    """Explicit-quantity market, limit and stop orders, with a periodic cancel_all."""

    name = "scaler"

    def on_start(self, ctx) -> None:
        self.n = 0

    def on_bar(self, bar, ctx) -> None:
        self.n += 1
        if self.n % 37 == 0:
            ctx.market(Side.BUY, 1.0, "add")
        if self.n % 53 == 0:
            ctx.market(Side.SELL, 1.5, "trim")
        if self.n % 97 == 0:
            ctx.limit(Side.BUY, bar.close * 0.995, "dip", qty=0.5)
        if self.n % 89 == 0:
            ctx.stop(Side.SELL, bar.close * 0.99, "breakdown", qty=0.7)
        if self.n % 301 == 0:
            ctx.cancel_all()


def _close(a: float, b: float, rel: float = REL) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)


def run_both(strategy: Strategy, series: BarSeries, config: BrokerConfig,
             trade_from_ms: int | None = None) -> tuple[Engine, BacktraderRun]:
    """The same strategy object through our engine, then through backtrader."""
    engine = Engine(strategy, config, trade_from_ms=trade_from_ms)
    engine.run(series.iter_bars())
    return engine, run_in_backtrader(strategy, series, config, trade_from_ms=trade_from_ms)


def assert_same_run(engine: Engine, bt_run: BacktraderRun) -> None:
    ours: EngineEvents = engine.events
    assert bt_run.rejected_orders == 0
    assert bt_run.events is bt_run
    # orders and their final statuses
    assert [o.client_id for o in ours.orders] == [o.client_id for o in bt_run.orders]
    assert engine.broker.status == bt_run.order_status
    # fills: prices, quantities and fees come from backtrader's notify_order
    assert len(ours.fills) == len(bt_run.fills)
    for a, b in zip(ours.fills, bt_run.fills):
        assert (a.order_id, a.ts_ms, a.side, a.reason, a.liquidity) == \
               (b.order_id, b.ts_ms, b.side, b.reason, b.liquidity)
        assert _close(a.qty, b.qty) and _close(a.price, b.price) and _close(a.fee_quote, b.fee_quote), (a, b)
    # trades
    assert len(ours.trades) == len(bt_run.trades)
    for a, b in zip(ours.trades, bt_run.trades):
        assert (a.side, a.entry_ts_ms, a.exit_ts_ms, a.exit_reason, a.bars_held) == \
               (b.side, b.entry_ts_ms, b.exit_ts_ms, b.exit_reason, b.bars_held), (a, b)
        for name in ("qty", "entry_price", "exit_price", "fees_quote"):
            assert _close(getattr(a, name), getattr(b, name)), (name, a, b)
        assert abs(a.pnl_quote - b.pnl_quote) <= REL * a.qty * a.entry_price, (a, b)
    # backtrader's own round trips agree with the ones rebuilt from its fills
    assert len(bt_run.bt_trades) == len(bt_run.trades)
    for a, b in zip(bt_run.trades, bt_run.bt_trades):
        assert (a.side, a.entry_ts_ms, a.exit_ts_ms) == (b.side, b.entry_ts_ms, b.exit_ts_ms)
        assert abs(a.pnl_quote - b.pnl_quote) <= REL * a.qty * a.entry_price
        assert _close(a.fees_quote, b.fees_quote)
    # equity curve, marked at every close
    assert ours.equity_ts_ms == bt_run.equity_ts_ms
    assert ours.equity_close == bt_run.equity_close
    eq_a, eq_b = np.asarray(ours.equity_quote), np.asarray(bt_run.equity_quote)
    assert np.all(np.abs(eq_a - eq_b) <= REL * np.abs(eq_a))
    assert _close(ours.equity_quote[-1], bt_run.equity_quote[-1])
    pos_a, pos_b = np.asarray(ours.equity_position), np.asarray(bt_run.equity_position)
    assert np.all((pos_a == 0) == (pos_b == 0))
    assert np.all(np.abs(pos_a - pos_b) <= REL * np.abs(pos_a))
    assert ours.signals == bt_run.signals


# ---- the two baselines on synthetic bars ---------------------------------------------------------
FEES = BrokerConfig(fee_bps=10.0)
CASES = [
    pytest.param(ZScoreReversion, FEES, 1, id="zscore-seed1"),
    pytest.param(ZScoreReversion, FEES, 2, id="zscore-seed2"),
    pytest.param(ZScoreReversion, FEES, 3, id="zscore-seed3"),
    pytest.param(ZScoreReversion, BrokerConfig(fee_bps=10.0, slippage_bps=5.0), 4, id="zscore-slippage"),
    pytest.param(lambda: ZScoreReversion(ZScoreConfig(long_only=True)), BrokerConfig(long_only=True), 5,
                 id="zscore-long-only"),
    pytest.param(BuyAndHold, FEES, 1, id="buyhold-seed1"),
    pytest.param(BuyAndHold, FEES, 2, id="buyhold-seed2"),
    pytest.param(BuyAndHold, BrokerConfig(fee_bps=10.0, slippage_bps=5.0), 3, id="buyhold-slippage"),
    pytest.param(Bracketed, FEES, 6, id="bracket-oco"),
    pytest.param(lambda: Bracketed(oco=False), BrokerConfig(fee_bps=10.0, slippage_bps=5.0), 7,
                 id="bracket-no-oco-slippage"),
    pytest.param(Bracketed, BrokerConfig(long_only=True), 8, id="bracket-long-only"),
    pytest.param(Scaler, FEES, 9, id="explicit-qty"),
    pytest.param(Scaler, BrokerConfig(slippage_bps=3.0, long_only=True), 10, id="explicit-qty-long-only"),
]


@pytest.mark.parametrize("make_strategy, config, seed", CASES)
def test_backtrader_makes_the_same_trades(make_strategy, config, seed):
    series = synthetic_bars(5_000, seed)
    engine, bt_run = run_both(make_strategy(), series, config)
    assert_same_run(engine, bt_run)
    if make_strategy is ZScoreReversion:
        assert len(engine.events.trades) > 100  # the comparison has teeth


MAKER_TAKER = BrokerConfig(fee_bps=5.0, maker_fee_bps=2.0)


@pytest.mark.parametrize("make_strategy, config, seed", [
    pytest.param(PassiveBracket, MAKER_TAKER, 21, id="passive-maker-taker"),
    pytest.param(lambda: PassiveBracket(expire=1, max_hold=6), BrokerConfig(fee_bps=10.0, slippage_bps=4.0), 22,
                 id="passive-expire-1-slippage"),
    pytest.param(lambda: PassiveBracket(long_only=True), BrokerConfig(long_only=True, maker_fee_bps=0.0), 23,
                 id="passive-long-only-zero-maker"),
])
def test_passive_entries_brackets_and_expiry_match_backtrader(make_strategy, config, seed):
    """Passive limit entries (sized at the fill, maker fee when they rested), their bracket stops
    (alive while the entry works, cancelled when it expires) and expiry, in both engines."""
    series = synthetic_bars(4_000, seed)
    engine, bt_run = run_both(make_strategy(), series, config)
    assert_same_run(engine, bt_run)
    statuses = list(engine.broker.status.values())
    fills = engine.events.fills
    assert statuses.count("expired") > 20 and statuses.count("cancelled") > 20  # expired entries + their stops
    assert sum(f.reason == "entry" and f.liquidity.value == "maker" for f in fills) > 20
    assert sum(f.reason == "stop" for f in fills) > 5
    if max(o.expire_after_bars or 0 for o in engine.events.orders) < 2:
        return
    # entries that rest for more than a bar keep their stop alive through flat closes (bracket semantics)
    placed = {o.client_id: o.created_ts_ms for o in engine.events.orders}
    entry_fill = {f.order_id: f.ts_ms for f in fills if f.reason == "entry"}
    stops = [o for o in engine.events.orders if o.reason == "stop" and o.parent_id in entry_fill]
    assert any(entry_fill[o.parent_id] > placed[o.parent_id] + series.timeframe_ms for o in stops)


def test_equity_floor_matches_backtrader():
    """A full-equity short in a rising market: both engines stop at the same close and close out."""
    n = 400
    ts = np.arange(n, dtype=np.int64) * 3_600_000 + 1_700_002_800_000
    close = 100.0 * np.exp(np.linspace(0.0, 1.2, n))
    open_ = np.concatenate(([close[0]], close[:-1]))
    series = BarSeries(ts, open_, np.maximum(open_, close) * 1.001, np.minimum(open_, close) * 0.999, close,
                       np.ones(n), 3_600_000)
    engine, bt_run = run_both(AllInShortEveryBar(), series, FEES)
    assert_same_run(engine, bt_run)
    assert engine.events.equity_floor_ts is not None
    assert bt_run.equity_floor_ts == engine.events.equity_floor_ts
    assert engine.events.fills[-1].reason == bt_run.fills[-1].reason == "equity_floor"
    assert engine.events.equity_position[-1] == 0.0


def test_warm_up_bars_are_seen_but_not_traded():
    series = synthetic_bars(3_000, 11)
    start = int(series.ts_ms[1_000])
    engine, bt_run = run_both(ZScoreReversion(), series, FEES, trade_from_ms=start)
    assert_same_run(engine, bt_run)
    assert bt_run.equity_ts_ms[0] == start and bt_run.signals[0].ts_ms == start


def test_backtrader_fills_market_orders_at_the_next_open():
    """Independently of our engine: every entry/exit price is the open of its fill bar."""
    series = synthetic_bars(3_000, 12)
    bt_run = run_in_backtrader(ZScoreReversion(), series, FEES)
    open_at = dict(zip(series.ts_ms.tolist(), series.open.tolist()))
    decided_at = {o.client_id: o.created_ts_ms for o in bt_run.orders}
    assert bt_run.fills
    for fill in bt_run.fills:
        assert fill.price == open_at[fill.ts_ms]
        assert fill.ts_ms == decided_at[fill.order_id] + series.timeframe_ms
        assert math.isclose(fill.fee_quote, fill.qty * fill.price * 1e-3, rel_tol=1e-12)


def test_tiny_and_empty_series():
    for n in (1, 2, 60):
        engine, bt_run = run_both(BuyAndHold(), synthetic_bars(n, 0), FEES)
        assert_same_run(engine, bt_run)
    empty = synthetic_bars(5, 0).take(slice(0, 0))
    assert run_in_backtrader(BuyAndHold(), empty, FEES).equity_quote == []


# ---- an independent reference of DESIGN.md's z-score rules --------------------------------------
def reference_zscore(open_: np.ndarray, close: np.ndarray, *, cash: float = 100_000.0, fee_bps: float = 10.0,
                     window: int = 50, entry_z: float = 2.0, long_only: bool = False) -> tuple[int, float, list]:
    """DESIGN.md rules written from scratch: numpy z-scores (population std over the last
    ``window`` returns including the current one), decisions at close t, fills at O_{t+1},
    q = cash / (O·(1+fee)), final equity cash + q·C_last. Returns (entries, equity, entry list)."""
    fee = fee_bps / 10_000.0
    n = len(close)
    r = np.log(close[1:] / close[:-1])  # r[k] is the return of bar k+1
    win = sliding_window_view(r, window)  # win[j] ends with the return of bar j+window
    z = np.full(n, np.nan)
    z[window:] = (r[window - 1:] - win.mean(axis=1)) / win.std(axis=1)
    side, qty, entries = 0, 0.0, []
    for t in range(window, n - 1):
        price = open_[t + 1]
        if side == 0:
            want = 1 if z[t] < -entry_z else (-1 if z[t] > entry_z and not long_only else 0)
            if want:
                qty = cash / (price * (1.0 + fee))
                cash -= want * qty * price + qty * price * fee
                side = want
                entries.append((t + 1, want, qty))
        elif (side > 0 and z[t] > 0.0) or (side < 0 and z[t] < 0.0):
            cash += side * qty * price - qty * price * fee
            side, qty = 0, 0.0
    return len(entries), cash + side * qty * close[-1], entries


def _engine_entries(events: EngineEvents) -> int:
    return len(events.trades) + (events.equity_position[-1] != 0.0)


@pytest.mark.parametrize("seed, long_only", [(1, False), (2, False), (3, False), (4, True)])
def test_engine_matches_plain_reference(seed, long_only):
    series = synthetic_bars(5_000, seed)
    events = Engine(ZScoreReversion(ZScoreConfig(long_only=long_only)), FEES).run(series.iter_bars())
    n_ref, equity_ref, entries = reference_zscore(series.open, series.close, long_only=long_only)
    assert n_ref > 100
    assert _engine_entries(events) == n_ref
    assert _close(events.equity_quote[-1], equity_ref)
    entry_fills = [f for f in events.fills if f.reason == "entry"]
    assert [(int(series.ts_ms[i]), s) for i, s, _ in entries] == [(f.ts_ms, f.side.sign) for f in entry_fills]
    assert all(_close(q, f.qty) for (_, _, q), f in zip(entries, entry_fills))


def test_dust_sized_account_still_trades():
    series = synthetic_bars(2_000, 1)
    config = BrokerConfig(cash_quote=1e-8)  # all-in size ~5e-13 BTC at 20,000
    events = Engine(ZScoreReversion(), config).run(series.iter_bars())
    n_ref, equity_ref, _ = reference_zscore(series.open, series.close, cash=1e-8)
    assert n_ref > 50
    assert _engine_entries(events) == n_ref
    assert _close(events.equity_quote[-1], equity_ref)


def test_adapter_trades_dust_sized_orders():
    """The adapter has no absolute size floor: it follows the reference on a dust-sized account."""
    series = synthetic_bars(2_000, 1)
    bt_run = run_in_backtrader(ZScoreReversion(), series, BrokerConfig(cash_quote=1e-8))
    n_ref, equity_ref, _ = reference_zscore(series.open, series.close, cash=1e-8)
    assert len(bt_run.trades) + (bt_run.equity_position[-1] != 0.0) == n_ref
    assert _close(bt_run.equity_quote[-1], equity_ref)
    assert bt_run.rejected_orders == 0


# ---- the real BTC 1h file (skipped when absent) ----------------------------------------------------
@pytest.fixture(scope="module")
def real_1h() -> BarSeries:
    if not REAL_1H.exists():
        pytest.skip(f"real data file not found: {REAL_1H}")
    return load_bars(REAL_1H)


@pytest.mark.real_data
@pytest.mark.parametrize("make_strategy", [ZScoreReversion, BuyAndHold], ids=["zscore", "buyhold"])
def test_real_btc_1h_same_in_backtrader(real_1h, make_strategy):
    engine, bt_run = run_both(make_strategy(), real_1h, FEES)
    assert_same_run(engine, bt_run)
    if make_strategy is ZScoreReversion:
        n_ref, equity_ref, _ = reference_zscore(real_1h.open, real_1h.close)
        assert _engine_entries(engine.events) == n_ref
        assert _close(engine.events.equity_quote[-1], equity_ref)
