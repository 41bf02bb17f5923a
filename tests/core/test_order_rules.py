"""Hand-computed ledgers for the maker/taker fee schedule, passive limit entries with expiry,
bracket links and the equity floor; and the typed per-bar result of ``Engine.step``.

Every expected number is worked out by hand from DESIGN.md's execution rules (see
test_ledger.py for the conventions): bar i opens at ts(i); cash 10,000 unless said.
"""
from __future__ import annotations

import pytest

from domain.types import CANCELLED, EXPIRED, FILLED, SUBMITTED, Liquidity, Side
from engine.backtest import measure
from engine.broker import BrokerConfig
from engine.costs import BpsSlippage, MakerTakerFee
from engine.loop import Engine
from engine.orders import OrderRejected
from feeds.synthetic import synthetic_bars
from domain.series import BarSeries
from tests.core.helpers import CallbackStrategy, make_bars, ts
from tests.core.passive import AllInShortEveryBar, PassiveBracket


def _approx(x: float) -> object:
    return pytest.approx(x, rel=1e-12, abs=1e-9)


def _fills(events) -> list[tuple]:
    return [(f.ts_ms, f.side.value, f.qty, f.price, f.fee_quote, f.liquidity.value) for f in events.fills]


def _run(script: dict, rows: list, **config) -> Engine:
    """Calls script[i](ctx, bar) at the close of bar i."""
    def on_bar(i, bar, ctx):
        if i in script:
            script[i](ctx, bar)

    engine = Engine(CallbackStrategy(on_bar), BrokerConfig(**({"cash_quote": 10_000.0} | config)))
    engine.run(make_bars(rows))
    return engine


# ---- maker vs taker ----------------------------------------------------------------------------
def test_resting_limits_pay_maker_and_marketable_ones_taker() -> None:
    rows = [(100, 101, 99, 100),   # 0: buy limit 98.5 × 10 placed
            (100, 101, 98, 99),    # 1: opens above 98.5, trades down to 98: rested → maker at 98.5
            (99, 100, 97, 98),     # 2: sell limit 97 × 10 placed
            (98, 99, 97.5, 98.5),  # 3: opens 98 >= 97: marketable on arrival → taker at the open 98
            (97, 98, 96.5, 97),    # 4: (buy limit 96 × 5 placed at close 3) low 96.5: no fill
            (95, 96, 94, 95)]      # 5: gaps below 96 on its 2nd bar: it was resting → maker at the open 95
    engine = _run({0: lambda ctx, bar: ctx.limit(Side.BUY, 98.5, "entry", qty=10),
                   2: lambda ctx, bar: ctx.limit(Side.SELL, 97, "exit", qty=10),
                   3: lambda ctx, bar: ctx.limit(Side.BUY, 96, "dip", qty=5)},
                  rows, fee_bps=10.0, maker_fee_bps=2.0)
    ev = engine.events
    assert _fills(ev) == [
        (ts(1), "buy", 10, 98.5, _approx(10 * 98.5 * 0.0002), "maker"),  # 0.197
        (ts(3), "sell", 10, 98, _approx(10 * 98 * 0.001), "taker"),      # 0.98
        (ts(5), "buy", 5, 95, _approx(5 * 95 * 0.0002), "maker"),        # 0.095
    ]
    (trade,) = ev.trades  # long 10 at 98.5 → 98: gross −5, fees 0.197 + 0.98
    assert (trade.gross_pnl_quote, trade.fees_quote, trade.pnl_quote) == (_approx(-5), _approx(1.177),
                                                                          _approx(-6.177))
    # cash 10000 − 985 − 0.197 + 980 − 0.98 − 475 − 0.095
    assert engine.portfolio.cash_quote == _approx(9_518.728)
    assert ev.equity_quote[-1] == _approx(9_518.728 + 5 * 95)


def test_fee_bps_alone_keeps_one_fee_for_every_fill() -> None:
    """Default behaviour is unchanged: without a maker fee, a resting limit pays ``fee_bps``."""
    engine = _run({0: lambda ctx, bar: ctx.limit(Side.BUY, 98.5, "entry", qty=10)},
                  [(100, 101, 99, 100), (100, 101, 98, 99)], fee_bps=10.0)
    assert _fills(engine.events) == [(ts(1), "buy", 10, 98.5, _approx(0.985), "maker")]


def test_passive_entry_is_sized_at_its_fill_with_the_maker_fee() -> None:
    """q = f × equity / (p × (1 + maker)): an all-in passive entry spends exactly the cash."""
    engine = _run({0: lambda ctx, bar: ctx.limit(Side.BUY, 98, "entry", target_fraction=1.0)},
                  [(100, 101, 99, 100), (100, 101, 97, 99)], fee_bps=10.0, maker_fee_bps=2.0)
    q = 10_000 / (98 * 1.0002)
    assert _fills(engine.events) == [(ts(1), "buy", _approx(q), 98, _approx(q * 98 * 0.0002), "maker")]
    assert engine.portfolio.cash_quote == pytest.approx(0.0, abs=1e-9)
    assert engine.events.equity_quote[-1] == _approx(q * 99)


def test_injected_fee_and_slippage_models_are_used() -> None:
    fee, slip = MakerTakerFee(taker_bps=30.0, maker_bps=0.0), BpsSlippage(100.0)
    eng = Engine(CallbackStrategy(lambda i, bar, ctx: i == 0 and ctx.market(Side.BUY, 1, "entry")),
                 BrokerConfig(fee_bps=10.0), fee_model=fee, slippage_model=slip)
    eng.run(make_bars([(100, 101, 99, 100), (200, 201, 199, 200)]))
    assert _fills(eng.events) == [(ts(1), "buy", 1, _approx(202), _approx(202 * 0.003), "taker")]


# ---- expiry and brackets -------------------------------------------------------------------------
def _entry_with_bracket(expire: int | None):
    def place(ctx, bar):
        ctx.limit(Side.BUY, 95, "entry", qty=10, expire_after_bars=expire)
        ctx.stop(Side.SELL, 90, "stop")  # placed with the entry: its bracket
    return place


def test_unfilled_passive_entry_expires_with_its_bracket() -> None:
    rows = [(100, 101, 99, 100), (99, 100, 96, 97), (97, 98, 95.5, 96), (94, 95, 80, 85), (85, 86, 84, 85)]
    engine = _run({0: _entry_with_bracket(expire=2)}, rows)
    # tried on bars 1 and 2 (lows 96, 95.5 stay above 95); expired after bar 2, so bar 3's crash
    # through 95 and 90 fills neither the entry nor its stop
    assert engine.events.fills == []
    assert engine.broker.status == {"o1": EXPIRED, "o2": CANCELLED}
    assert engine.broker.pending == []


def test_passive_entry_fills_on_its_last_bar_and_its_bracket_stop_survives_flat_bars() -> None:
    rows = [(100, 101, 99, 100),   # 0: entry limit 95 (expires after 2 bars) + stop 90
            (99, 100, 96, 97),     # 1: flat at the close, the entry still working: the stop lives on
            (97, 98, 94, 96),      # 2: the entry's last bar: low 94 → fills at 95 (maker = taker 10 bps)
            (96, 97, 92, 93),      # 3: stop 90 not reached
            (91, 92, 88, 89)]      # 4: low 88 → the stop fills at 90
    engine = _run({0: _entry_with_bracket(expire=2)}, rows)
    assert _fills(engine.events) == [(ts(2), "buy", 10, 95, _approx(0.95), "maker"),
                                     (ts(4), "sell", 10, 90, _approx(0.9), "taker")]
    (trade,) = engine.events.trades
    assert (trade.pnl_quote, trade.exit_reason, trade.bars_held) == (_approx(-50 - 1.85), "stop", 2)
    assert engine.broker.status == {"o1": FILLED, "o2": FILLED}
    assert engine.events.orders[1].parent_id == "o1"


def test_bracket_stop_is_cancelled_when_its_position_closes() -> None:
    rows = [(100, 101, 99, 100), (99, 100, 94, 96), (96, 97, 95, 96), (96, 97, 80, 85)]
    script = {0: _entry_with_bracket(expire=None), 1: lambda ctx, bar: ctx.close("exit")}
    engine = _run(script, rows)
    # entry fills on bar 1 at 95; the close fills at bar 2's open 96; the stop dies with the
    # position, so bar 3's crash through 90 does not open a short
    assert [(f.ts_ms, f.reason) for f in engine.events.fills] == [(ts(1), "entry"), (ts(2), "exit")]
    assert engine.broker.status == {"o1": FILLED, "o2": CANCELLED, "o3": FILLED}
    assert engine.portfolio.position_qty == 0.0


def test_a_stop_placed_without_an_entry_still_dies_when_flat() -> None:
    engine = _run({0: lambda ctx, bar: ctx.stop(Side.SELL, 90, "stop")},
                  [(100, 101, 99, 100), (99, 100, 96, 97), (90, 91, 80, 85)])
    assert engine.events.orders[0].parent_id is None
    assert engine.broker.status == {"o1": CANCELLED} and engine.events.fills == []


@pytest.mark.parametrize("kwargs, message", [
    (dict(expire_after_bars=0), "expire_after_bars"),
    (dict(expire_after_bars=1.5), "expire_after_bars"),
    (dict(target_fraction=-0.5), "cannot target"),
    (dict(target_fraction=0.0), "non-zero"),
    (dict(target_fraction=float("nan")), "finite"),
    (dict(target_fraction=0.5, qty=1.0), "either qty or target_fraction"),
])
def test_bad_passive_orders_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(OrderRejected, match=message):
        _run({0: lambda ctx, bar: ctx.limit(Side.BUY, 95, "entry", **kwargs)}, [(100, 101, 99, 100)] * 2)


def test_order_info_keeps_its_fields_and_refuses_unknown_ones() -> None:
    engine = _run({0: lambda ctx, bar: ctx.target_percent(0.5, "entry", signal=-2.5, threshold=-2.0, model_version=3)},
                  [(100, 101, 99, 100)] * 2)
    order = engine.events.orders[0]
    assert (order.target_fraction, order.signal, order.threshold, order.model_version) == (0.5, -2.5, -2.0, 3)
    assert (order.side, order.qty, order.price, order.parent_id, order.expire_after_bars) == (None,) * 5
    with pytest.raises(TypeError, match="sigal"):
        _run({0: lambda ctx, bar: ctx.target_percent(1.0, "entry", sigal=1.0)}, [(100, 101, 99, 100)] * 2)


def test_long_only_rejects_a_short_passive_entry() -> None:
    with pytest.raises(OrderRejected, match="long_only"):
        _run({0: lambda ctx, bar: ctx.limit(Side.SELL, 105, "entry", target_fraction=-1.0)},
             [(100, 101, 99, 100)] * 2, long_only=True)


# ---- the equity floor ------------------------------------------------------------------------------
RISING = [(100, 100, 100, 100), (100, 120, 100, 120), (120, 150, 120, 150), (150, 190, 150, 190),
          (190, 210, 190, 210), (220, 230, 220, 230), (230, 250, 230, 250), (250, 270, 250, 270)]


def test_full_equity_short_in_a_rising_series_hits_the_floor_and_closes_out() -> None:
    strategy = AllInShortEveryBar()
    engine = Engine(strategy, BrokerConfig(cash_quote=10_000.0, fee_bps=10.0))
    bars = make_bars(RISING)
    events = engine.run(bars)
    # short q = 10000 / (100 × 1.001) at bar 1's open; cash = 10000 + q·100·(1 − 0.001)
    q = 10_000 / (100 * 1.001)
    cash = 10_000 + q * 100 * 0.999
    # equity = cash − q·close: 10000 − q·20 at bar 1 … zero at close 200 (cash / q = 200.0); the
    # close 210 of bar 4 is the first mark at or below zero
    assert events.equity_quote[:5] == [_approx(10_000), _approx(cash - q * 120), _approx(cash - q * 150),
                                       _approx(cash - q * 190), _approx(cash - q * 210)]
    assert cash - q * 190 > 0 > cash - q * 210
    assert events.equity_floor_ts == ts(4) and engine.equity_floor_ts == ts(4)
    # closed out at bar 5's open 220 (taker fee), then flat: equity stays at the (negative) cash
    final_cash = cash - q * 220 * 1.001
    assert _fills(events)[-1] == (ts(5), "buy", _approx(q), 220, _approx(q * 220 * 0.001), "taker")
    assert events.fills[-1].reason == "equity_floor"
    (trade,) = events.trades
    assert (trade.side, trade.exit_reason, trade.pnl_quote) == ("short", "equity_floor",
                                                                _approx(q * (100 - 220) - q * 100 * 0.001
                                                                        - q * 220 * 0.001))
    assert events.equity_quote[5:] == [_approx(final_cash)] * 3
    assert events.equity_position[5:] == [0.0] * 3
    assert strategy.calls == 5  # bars 0–4: never asked again after the floor, so it cannot re-enter
    metrics = measure(BarSeries.from_bars(bars, 3_600_000), events, engine.broker.status, engine.config).metrics
    assert metrics["equity_floor_hit"] is True and metrics["equity_floor_ts"] == ts(4)
    assert metrics["final_equity"] == _approx(final_cash)


def test_a_run_above_the_floor_is_not_marked() -> None:
    engine = Engine(AllInShortEveryBar(), BrokerConfig())
    bars = make_bars([(100, 101, 99, 100)] * 5)
    events = engine.run(bars)
    metrics = measure(BarSeries.from_bars(bars, 3_600_000), events, engine.broker.status, engine.config).metrics
    assert metrics["equity_floor_hit"] is False and metrics["equity_floor_ts"] is None


# ---- Engine.step returns exactly what each bar changed ---------------------------------------------
def test_step_results_add_up_to_the_run() -> None:
    series = synthetic_bars(1_500, 5)
    trade_from = int(series.ts_ms[100])
    whole = Engine(PassiveBracket(), BrokerConfig(maker_fee_bps=2.0), trade_from_ms=trade_from)
    whole.run(series.iter_bars())
    stepped = Engine(PassiveBracket(), BrokerConfig(maker_fee_bps=2.0), trade_from_ms=trade_from)
    stepped.begin()
    steps = [stepped.step(bar) for bar in series.iter_bars()]
    ev = whole.events
    assert [o for s in steps for o in s.orders] == ev.orders
    assert [f for s in steps for f in s.fills] == ev.fills
    assert [t for s in steps for t in s.trades] == ev.trades
    assert [g for s in steps for g in s.signals] == ev.signals
    marks = [s.equity for s in steps if s.equity is not None]
    assert [(e.ts_ms, e.cash_quote, e.position_qty, e.close, e.equity_quote) for e in marks] == \
        list(zip(ev.equity_ts_ms, ev.equity_cash, ev.equity_position, ev.equity_close, ev.equity_quote))
    assert all(s.equity is None for s in steps[:100]) and all(s.orders == () for s in steps[:100])
    # status changes, replayed in order, give the final statuses; each bar lists only real changes
    status: dict[str, str] = {}
    for s in steps:
        assert all(status.get(cid) != st for cid, st in s.status_changes.items())
        status.update(s.status_changes)
        assert all(s.status_changes[o.client_id] == status[o.client_id] for o in s.orders)
    assert status == whole.broker.status
    assert {EXPIRED, CANCELLED, FILLED} <= set(status.values())  # the test has teeth
    assert any(f.liquidity is Liquidity.MAKER for f in ev.fills)
    assert not any(s.equity_floor_hit for s in steps)


def test_step_marks_the_floor_bar() -> None:
    engine = Engine(AllInShortEveryBar(), BrokerConfig(cash_quote=10_000.0))
    engine.begin()
    steps = [engine.step(bar) for bar in make_bars(RISING)]
    assert [s.equity_floor_hit for s in steps] == [False] * 4 + [True] + [False] * 3
    assert [(o.reason, o.target_fraction) for o in steps[4].orders] == [("equity_floor", 0.0)]
    assert steps[4].status_changes == {steps[4].orders[0].client_id: SUBMITTED}
