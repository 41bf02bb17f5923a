"""The z-score strategy's backtest fast path against its bar-by-bar stream.

- :func:`rolling_zscores` (bulk) returns the bits :class:`RollingZScore` (streaming) returns,
  on windows, lengths and values chosen to stress rounding;
- ``Engine.run_series`` with a prepared strategy (quiet bars passed in bulk) produces the events
  ``Engine.run`` produces with an unprepared one (every bar through on_bar, z streamed): orders,
  fills, trades, signals and every equity column, value for value;
- the prepared z of a bar does not change when later bars do (no lookahead).
"""
from __future__ import annotations

import dataclasses
from array import array
import math

import numpy as np
import pytest

from domain.columns import SignalLog
from domain.errors import DataError
from domain.series import BarSeries
from domain.types import SignalPoint
from engine.broker import BrokerConfig
from engine.loop import Engine, _before_floor
from feeds.synthetic import synthetic_bars
from strategies.zscore import RollingZScore, ZScoreConfig, ZScoreReversion, log_returns, rolling_zscores


def streamed(values: list[float], window: int) -> np.ndarray:
    z = RollingZScore(window)
    return np.array([np.nan if (r := z.update(x)) is None else r for x in values], dtype=np.float64)


def bits(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype=np.float64).tobytes()


@pytest.mark.parametrize("seed", range(60))
def test_bulk_zscores_are_the_streams_bits(seed: int) -> None:
    rng = np.random.default_rng(seed)
    window = int(rng.integers(2, 9)) if seed % 2 else int(rng.integers(2, 70))
    length = int(rng.integers(0, 5 * window + 40))
    x = rng.standard_normal(length) * 10 ** rng.uniform(-6, 3)
    kind = seed % 4
    if kind == 1:
        x = np.round(x, 2)  # many ties and exact cancellations
    elif kind == 2:
        x[: length // 2] = 0.5  # constant stretch: zero variance, z = 0
    elif kind == 3:
        x = x + 1e4  # large mean: the running sums lose low bits, the exact resets must match
    assert bits(rolling_zscores(x, window)) == bits(streamed(x.tolist(), window))


def test_log_returns_use_the_streams_log() -> None:
    close = synthetic_bars(5_000, seed=3).close
    expected = [math.log(b / a) for a, b in zip(close.tolist(), close[1:].tolist())]
    assert log_returns(close).tolist() == expected


def test_a_bars_prepared_z_ignores_later_bars() -> None:
    series = synthetic_bars(3_000, seed=5)
    full = ZScoreReversion(ZScoreConfig(window=30))
    full.prepare_backtest(series)
    cut = ZScoreReversion(ZScoreConfig(window=30))
    head = series.take(slice(0, 1_234))
    cut.prepare_backtest(head)
    assert full._prepared is not None and cut._prepared is not None
    assert bits(full._prepared.z[:1_234]) == bits(cut._prepared.z)


def run_both(series: BarSeries, config: ZScoreConfig, broker: BrokerConfig = BrokerConfig(),
             trade_from_ms: int | None = None) -> tuple[Engine, Engine]:
    streaming = Engine(ZScoreReversion(config), broker, trade_from_ms=trade_from_ms)
    streaming.run(series.iter_bars())
    strategy = ZScoreReversion(config)
    strategy.prepare_backtest(series)
    fast = Engine(strategy, broker, trade_from_ms=trade_from_ms)
    calls = 0
    on_bar = strategy.on_bar

    def counted(bar, ctx):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        on_bar(bar, ctx)

    strategy.on_bar = counted  # type: ignore[method-assign]
    fast._on_bar = counted
    fast.run_series(series)
    fast.on_bar_calls = calls  # type: ignore[attr-defined]
    return streaming, fast


def assert_same_events(a: Engine, b: Engine) -> None:
    for f in dataclasses.fields(a.events):
        left, right = getattr(a.events, f.name), getattr(b.events, f.name)
        assert left == right, f.name
    for name in ("equity_cash", "equity_position", "equity_quote"):
        assert bits(np.asarray(getattr(a.events, name))) == bits(np.asarray(getattr(b.events, name))), name
    assert list(a.events.signals) == list(b.events.signals)
    assert a.broker.status == b.broker.status
    assert a.bar_index == b.bar_index and a.bar == b.bar


@pytest.mark.parametrize("config, broker", [
    (ZScoreConfig(), BrokerConfig()),
    (ZScoreConfig(window=20, entry_z=1.5, long_only=True), BrokerConfig(fee_bps=5.0, slippage_bps=2.0,
                                                                         long_only=True)),
    (ZScoreConfig(window=2, entry_z=0.5, exit_z=0.3), BrokerConfig(fee_bps=0.0)),
    (ZScoreConfig(window=80, entry_z=3.0, exit_z=-0.5), BrokerConfig(fee_bps=25.0)),
])
def test_fast_path_gives_the_streams_events(config: ZScoreConfig, broker: BrokerConfig) -> None:
    series = synthetic_bars(150_000, seed=11)  # more than two chunks of the loop
    streaming, fast = run_both(series, config, broker)
    assert len(fast.events.trades) > 20
    assert_same_events(streaming, fast)
    assert fast.on_bar_calls < len(series)  # type: ignore[attr-defined]  # quiet bars were skipped
    if config == ZScoreConfig():
        assert fast.on_bar_calls < 0.3 * len(series)  # type: ignore[attr-defined]  # most of them


def test_fast_path_after_a_warm_up() -> None:
    series = synthetic_bars(20_000, seed=2)
    trade_from = int(series.ts_ms[7_777])
    streaming, fast = run_both(series, ZScoreConfig(window=40), trade_from_ms=trade_from)
    assert fast.events.equity_ts_ms[0] == trade_from
    assert_same_events(streaming, fast)


def test_a_quiet_stretch_stops_at_the_equity_floor() -> None:
    """Short into a rally that wipes the account out during bars the strategy would pass quietly."""
    n = 400
    close = np.full(n, 100.0)
    close[:60] = 100.0 + np.sin(np.arange(60)) * 0.5
    close[60] = 115.0  # z > 2: short at the next open
    close[61:] = 116.0 + np.arange(n - 61) * 1.0  # a steady climb (z stays > 0 once the window adapts)
    close[120:] = close[119] * 3.0  # the short loses more than the account
    opens = np.concatenate([[close[0]], close[:-1]])
    ts = 1_700_000_000_000 + np.arange(n, dtype=np.int64) * 3_600_000
    series = BarSeries(ts, opens, np.maximum(opens, close), np.minimum(opens, close), close, np.ones(n),
                       3_600_000)
    streaming, fast = run_both(series, ZScoreConfig(window=20, exit_z=50.0), BrokerConfig(fee_bps=0.0))
    assert streaming.events.equity_floor_ts == int(ts[120])
    assert_same_events(streaming, fast)


def test_a_prepared_strategy_refuses_other_bars() -> None:
    series = synthetic_bars(500, seed=1)
    strategy = ZScoreReversion()
    strategy.prepare_backtest(series)
    with pytest.raises(RuntimeError, match="prepared series"):
        Engine(strategy).run(synthetic_bars(500, seed=1, start_ms=0).iter_bars())


def test_bars_out_of_order_are_refused_on_the_fast_path_too() -> None:
    series = synthetic_bars(300, seed=1)
    ts = series.ts_ms.copy()
    ts[200], ts[201] = ts[201], ts[200]
    shuffled = dataclasses.replace(series, ts_ms=ts)
    strategy = ZScoreReversion()
    strategy.prepare_backtest(shuffled)
    with pytest.raises(DataError, match="out of order"):
        Engine(strategy).run_series(shuffled)


def test_signal_log_extends_in_order() -> None:
    log = SignalLog()
    log.append(SignalPoint(1, 0.5, None, 0.25, 3))
    log.extend(np.array([2, 3], dtype=np.int64), np.array([-0.0, 1e-300]), 2.0)
    log.compact_if_due()
    log.append(SignalPoint(4, float("inf"), 1.0, None, None))
    assert list(log) == [SignalPoint(1, 0.5, None, 0.25, 3), SignalPoint(2, -0.0, 2.0, None, None),
                         SignalPoint(3, 1e-300, 2.0, None, None), SignalPoint(4, float("inf"), 1.0, None, None)]
    assert math.copysign(1.0, log[1].signal) == -1.0
    with pytest.raises(ValueError, match="2 times but 1 signals"):
        log.extend(np.array([5, 6]), np.array([1.0]))


def test_signal_log_takes_many_points_straight_into_its_arrays() -> None:
    """The bulk path (thousands of points) keeps every value exact, the recent points first."""
    log = SignalLog()
    log.append(SignalPoint(1, 0.5, None, 0.25, 3))
    ts = np.arange(2, 10_002, dtype=np.int64)
    values = np.random.default_rng(7).standard_normal(len(ts))
    values[5] = -0.0
    log.extend(ts, values, 1.5, None, 4)
    log.append(SignalPoint(20_000, 2.0, None, None, None))
    points = list(log)
    assert points[0] == SignalPoint(1, 0.5, None, 0.25, 3)
    assert points[1:-1] == [SignalPoint(int(t), float(v), 1.5, None, 4) for t, v in zip(ts, values)]
    assert math.copysign(1.0, points[6].signal) == -1.0
    assert points[-1] == SignalPoint(20_000, 2.0, None, None, None)
    columns = log.columns()
    assert bits(columns["signal"][0][1:-1]) == bits(values)
    assert columns["unusualness"][1] is not None and columns["unusualness"][1].tolist() == [False] + [True] * 10_001
    with pytest.raises(ValueError, match="must increase"):
        SignalLog([SignalPoint(5, 0.0, None, None, None)]).extend(np.arange(5, 5_005), np.zeros(5_000))


def test_bulk_signals_skip_warm_up_bars_in_both_contexts() -> None:
    """A strategy that records its signals in bulk when it stops: bars before trade_from are dropped,
    as record_signal drops them bar by bar."""
    from engine.backtrader_adapter import run_in_backtrader

    class AtStop(ZScoreReversion):
        def on_stop(self, ctx):  # type: ignore[no-untyped-def]
            ctx.record_signals(series.ts_ms[:100], np.arange(100, dtype=np.float64), 2.0)

    series = synthetic_bars(300, seed=5)
    trade_from = int(series.ts_ms[60])
    ours = Engine(AtStop(ZScoreConfig(window=500)), trade_from_ms=trade_from)
    ours.run(series.iter_bars())
    theirs = run_in_backtrader(AtStop(ZScoreConfig(window=500)), series, BrokerConfig(), trade_from_ms=trade_from)
    expected = [SignalPoint(int(series.ts_ms[i]), float(i), 2.0, None, None) for i in range(60, 100)]
    assert list(ours.events.signals) == expected
    assert list(theirs.events.signals) == expected


class _BulkRecorder(ZScoreReversion):
    """Records two extra points in bulk at bar 5: both engines' contexts take them the same way."""

    def on_bar(self, bar, ctx):  # type: ignore[no-untyped-def]
        super().on_bar(bar, ctx)
        if bar.ts_ms == self.at:
            ctx.record_signals(np.array([1, 2], dtype=np.int64), np.array([0.25, -0.0]), 1.5)


def test_both_engines_record_bulk_signals_alike() -> None:
    from engine.backtrader_adapter import run_in_backtrader

    series = synthetic_bars(300, seed=4)
    native, adapted = _BulkRecorder(ZScoreConfig(window=20)), _BulkRecorder(ZScoreConfig(window=20))
    native.at = adapted.at = int(series.ts_ms[5])
    ours = Engine(native).run(series.iter_bars())
    theirs = run_in_backtrader(adapted, series, BrokerConfig()).events
    assert list(ours.signals)[:2] == [SignalPoint(1, 0.25, 1.5, None, None), SignalPoint(2, -0.0, 1.5, None, None)]
    assert list(ours.signals) == list(theirs.signals) and len(ours.signals) > 200


def test_before_floor_finds_the_first_mark_at_or_below_zero() -> None:
    """The shortcut (only the worst close is marked when it stays above zero) agrees with marking
    every close, including closes right at the floor's edge."""
    rng = np.random.default_rng(11)
    for _ in range(2_000):
        qty = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.01, 5.0))
        cash = float(rng.uniform(-50_000.0, 150_000.0))
        edge = -cash / qty if cash * qty < 0 else 20_000.0  # the close at which the mark reaches zero
        closes = array("d", (edge * (1.0 + float(d)) for d in rng.choice([-1e-16, 0.0, 1e-16, -0.01, 0.01], 12)))
        brute = next((k for k, c in enumerate(closes) if cash + qty * c <= 0.0), len(closes))
        assert _before_floor(closes, cash, qty) == brute
    assert _before_floor(array("d", [1.0, 2.0]), 0.0, 0.0) == 0
    assert _before_floor(array("d", [1.0, 2.0]), 5.0, 0.0) == 2
