"""Hand-computed ledgers: tiny candle tables, a scripted strategy, fills/trades/cash worked out by hand.

Every expected number below was computed by hand from DESIGN.md's execution
contract (market at the next open, stop/limit at the order price or the open if
gapped through, fee = fee_bps × notional, slippage buys higher / sells lower),
never by calling the engine. Bar i has open time ts(i); a fill row is
(bar index, side, qty, price, fee); a trade row is
(side, qty, entry bar, exit bar, entry px, exit px, gross, fees, net, return %, exit reason, bars held).
Defaults: cash 10,000, fee 10 bps (0.001), no slippage.
"""
from __future__ import annotations

import pytest

from engine.broker import BrokerConfig, OrderRejected
from engine.loop import Engine
from feeds.validation import DataError
from tests.core.helpers import Scripted, flat_bars, make_bars, run, ts

UP = [  # (open, high, low, close)
    (100, 101, 99, 100),    # 0
    (102, 103, 101, 102),   # 1
    (104, 106, 103, 105),   # 2
    (106, 107, 104, 106),   # 3
    (108, 109, 107, 108),   # 4
]
DOWN = [
    (100, 101, 99, 100),    # 0
    (98, 99, 97, 98),       # 1
    (96, 97, 95, 96),       # 2
    (94, 95, 93, 94),       # 3
    (92, 93, 91, 92),       # 4
]
Q2 = 100_000 / 1001  # flip case: short size = 11,000 / (110 × 1.001)

CASES = [
    pytest.param(dict(
        bars=UP,
        script={0: [("market", "buy", 10, "entry")], 2: [("close", "exit")]},
        # decided at close 0 → fills at open 1 (102), fee 10×102×0.001; close decided at 2 → open 3 (106)
        fills=[(1, "buy", 10, 102, 1.02), (3, "sell", 10, 106, 1.06)],
        # gross 10×(106−102)=40, fees 2.08, net 37.92, return 37.92/1020
        trades=[("long", 10, 1, 3, 102, 106, 40, 2.08, 37.92, 37.92 / 1020 * 100, "exit", 2)],
        cash=10_037.92,  # 10000 − 1020 − 1.02 + 1060 − 1.06
        position=0.0,
        # marks: 10000 | 8978.98 + 10×102 | 8978.98 + 10×105 | flat 10037.92 | flat
        equity=[10_000, 9_998.98, 10_028.98, 10_037.92, 10_037.92],
    ), id="market-fills-at-next-open-with-fees"),
    pytest.param(dict(
        bars=UP, config=dict(slippage_bps=50),
        script={0: [("market", "buy", 10, "entry")], 2: [("close", "exit")]},
        # buy at 102×1.005 = 102.51 (fee 1.0251); sell at 106×0.995 = 105.47 (fee 1.0547)
        fills=[(1, "buy", 10, 102.51, 1.0251), (3, "sell", 10, 105.47, 1.0547)],
        trades=[("long", 10, 1, 3, 102.51, 105.47, 29.6, 2.0798, 27.5202, 27.5202 / 1025.1 * 100, "exit", 2)],
        cash=10_027.5202,  # 10000 − 1025.1 − 1.0251 + 1054.7 − 1.0547
        position=0.0,
    ), id="slippage-buys-higher-sells-lower"),
    pytest.param(dict(
        bars=[(100, 101, 99, 100), (102, 103, 101, 102), (95, 97, 94, 96), (96, 97, 95, 96)],
        script={0: [("market", "buy", 10, "entry")], 1: [("stop", "sell", 100, "stop")]},
        # bar 2 opens at 95, below the 100 stop: fills at the open 95, fee 0.95
        fills=[(1, "buy", 10, 102, 1.02), (2, "sell", 10, 95, 0.95)],
        trades=[("long", 10, 1, 2, 102, 95, -70, 1.97, -71.97, -71.97 / 1020 * 100, "stop", 1)],
        cash=9_928.03,  # 10000 − 1021.02 + 950 − 0.95
        position=0.0,
    ), id="gap-through-stop-fills-at-open"),
    pytest.param(dict(
        bars=[(100, 101, 99, 100), (102, 103, 101, 102), (101, 101.5, 98, 99), (99, 100, 98, 99)],
        script={0: [("market", "buy", 10, "entry")], 1: [("stop", "sell", 100, "stop")]},
        # bar 2 opens at 101 and trades down to 98: the stop fills at its price 100
        fills=[(1, "buy", 10, 102, 1.02), (2, "sell", 10, 100, 1.0)],
        trades=[("long", 10, 1, 2, 102, 100, -20, 2.02, -22.02, -22.02 / 1020 * 100, "stop", 1)],
        cash=9_977.98,  # 10000 − 1021.02 + 1000 − 1
        position=0.0,
    ), id="stop-inside-bar-fills-at-stop-price"),
    pytest.param(dict(
        bars=[(100, 101, 99, 100), (98, 99, 97, 98), (103, 104, 102, 103), (103, 104, 102, 103)],
        script={0: [("market", "sell", 10, "entry")], 1: [("stop", "buy", 100, "stop")]},
        # short 10 at 98; bar 2 gaps up to 103 over the 100 buy stop: fills at 103, fee 1.03
        fills=[(1, "sell", 10, 98, 0.98), (2, "buy", 10, 103, 1.03)],
        trades=[("short", 10, 1, 2, 98, 103, -50, 2.01, -52.01, -52.01 / 980 * 100, "stop", 1)],
        cash=9_947.99,  # 10000 + 980 − 0.98 − 1030 − 1.03
        position=0.0,
    ), id="short-gap-up-through-buy-stop-fills-at-open"),
    pytest.param(dict(
        bars=[(100, 101, 99, 100), (102, 103, 101, 102), (103, 107, 99, 104), (104, 108, 103, 107)],
        script={0: [("market", "buy", 10, "entry")],
                1: [("stop", "sell", 100, "stop", 10, "bracket"), ("limit", "sell", 106, "target", 10, "bracket")]},
        # bar 2 (low 99, high 107) touches both: the stop is taken first at 100; the OCO target is
        # cancelled and does not fill on bar 3 (high 108) either
        fills=[(1, "buy", 10, 102, 1.02), (2, "sell", 10, 100, 1.0)],
        trades=[("long", 10, 1, 2, 102, 100, -20, 2.02, -22.02, -22.02 / 1020 * 100, "stop", 1)],
        cash=9_977.98,
        position=0.0,
        statuses={"o1": "filled", "o2": "filled", "o3": "cancelled"},
    ), id="stop-and-target-in-one-bar-stop-first-oco"),
    pytest.param(dict(
        bars=[(100, 101, 99, 100), (102, 103, 101, 102), (103, 107, 102, 106), (90, 91, 85, 88)],
        script={0: [("market", "buy", 10, "entry")],
                1: [("stop", "sell", 100, "stop", 10, "bracket"), ("limit", "sell", 106, "target", 10, "bracket")]},
        # bar 2 reaches the 106 target (low 102 spares the stop); the OCO stop is cancelled, so the
        # crash on bar 3 (low 85) does not sell another 10 into a short
        fills=[(1, "buy", 10, 102, 1.02), (2, "sell", 10, 106, 1.06)],
        trades=[("long", 10, 1, 2, 102, 106, 40, 2.08, 37.92, 37.92 / 1020 * 100, "target", 1)],
        cash=10_037.92,
        position=0.0,
        statuses={"o1": "filled", "o2": "cancelled", "o3": "filled"},
    ), id="target-fill-cancels-oco-stop"),
    pytest.param(dict(
        bars=[(100, 101, 99, 100), (102, 103, 101, 102), (103, 106.5, 102, 106), (106, 107, 105, 106)],
        script={0: [("market", "buy", 10, "entry")], 1: [("limit", "sell", 106, "target")]},
        # bar 2 opens 103 and reaches 106.5: the take-profit fills at its price 106
        fills=[(1, "buy", 10, 102, 1.02), (2, "sell", 10, 106, 1.06)],
        trades=[("long", 10, 1, 2, 102, 106, 40, 2.08, 37.92, 37.92 / 1020 * 100, "target", 1)],
        cash=10_037.92,
        position=0.0,
    ), id="take-profit-limit-at-limit-price"),
    pytest.param(dict(
        bars=[(100, 101, 99, 100), (102, 103, 101, 102), (108, 109, 107, 108), (108, 109, 107, 108)],
        script={0: [("market", "buy", 10, "entry")], 1: [("limit", "sell", 106, "target")]},
        # bar 2 gaps up to 108 over the 106 limit: fills at the better open 108, fee 1.08
        fills=[(1, "buy", 10, 102, 1.02), (2, "sell", 10, 108, 1.08)],
        trades=[("long", 10, 1, 2, 102, 108, 60, 2.10, 57.90, 57.90 / 1020 * 100, "target", 1)],
        cash=10_057.90,  # 10000 − 1021.02 + 1080 − 1.08
        position=0.0,
    ), id="limit-gapped-through-fills-at-open"),
    pytest.param(dict(
        bars=[(100, 101, 99, 100), (102, 103, 101.5, 102), (103, 104, 102, 103), (102, 103, 100, 101),
              (101, 102, 100, 101)],
        config=dict(slippage_bps=50),
        script={0: [("limit", "buy", 101, "dip", 10)], 3: [("close", "exit")]},
        # the buy limit 101 waits (lows 101.5, 102) and fills on bar 3 at 101 — no slippage on limits;
        # the market exit at open 4 is slipped: 101 × 0.995 = 100.495, fee 1.00495
        fills=[(3, "buy", 10, 101, 1.01), (4, "sell", 10, 100.495, 1.00495)],
        trades=[("long", 10, 3, 4, 101, 100.495, -5.05, 2.01495, -7.06495, -7.06495 / 1010 * 100, "exit", 1)],
        cash=9_992.93505,  # 10000 − 1010 − 1.01 + 1004.95 − 1.00495
        position=0.0,
    ), id="limit-entry-good-till-cancelled-no-slippage"),
    pytest.param(dict(
        bars=[(99, 100, 98, 99), (100, 106, 99, 105), (110, 111, 108, 109), (100, 101, 99, 100)],
        config=dict(cash_quote=10_010),
        script={0: [("target", 1.0, "entry")], 1: [("target", -1.0, "flip")], 2: [("close", "exit")]},
        fills=[
            (1, "buy", 100, 100, 10.0),  # q1 = 10010 / (100 × 1.001) = 100; cash → 0
            # equity at 110: 0 + 100 × 110 = 11000; target −11000 / (110 × 1.001) = −Q2; sell 100 + Q2
            (2, "sell", 100 + Q2, 110, (100 + Q2) * 110 * 0.001),
            (3, "buy", Q2, 100, Q2 * 100 * 0.001),
        ],
        trades=[
            # closing share of the flip fee: 100 × 110 × 0.001 = 11 → fees 10 + 11
            ("long", 100, 1, 2, 100, 110, 1000, 21, 979, 979 / 10_000 * 100, "flip", 1),
            # opening share Q2 × 0.11, exit fee Q2 × 0.1; net Q2 × (10 − 0.21); return 9.79 / 110
            ("short", Q2, 2, 3, 110, 100, Q2 * 10, Q2 * 0.21, Q2 * 9.79, 9.79 / 110 * 100, "exit", 1),
        ],
        # 0 + (100 + Q2) × 110 × 0.999 − Q2 × 100 × 1.001 = 10989 + 109.89 Q2 − 10000
        cash=989 + 109.89 * Q2,
        position=0.0,
        equity=[10_010, 10_500, 10_989 + 109.89 * Q2 - 109 * Q2, 989 + 109.89 * Q2],
    ), id="flip-long-to-short-in-one-order-fee-split"),
    pytest.param(dict(
        bars=DOWN,
        script={0: [("market", "sell", 10, "entry")], 2: [("close", "cover")]},
        # short 10 at 98 (fee 0.98), cover at 94 (fee 0.94): gross +40
        fills=[(1, "sell", 10, 98, 0.98), (3, "buy", 10, 94, 0.94)],
        trades=[("short", 10, 1, 3, 98, 94, 40, 1.92, 38.08, 38.08 / 980 * 100, "cover", 2)],
        cash=10_038.08,  # 10000 + 980 − 0.98 − 940 − 0.94
        position=0.0,
        # marks: 10000 | 10979.02 − 10×98 | 10979.02 − 10×96 | 10038.08 | 10038.08
        equity=[10_000, 9_999.02, 10_019.02, 10_038.08, 10_038.08],
    ), id="short-pnl"),
    pytest.param(dict(
        bars=UP, config=dict(long_only=True),
        script={0: [("market", "sell", 10, "entry")]},
        fills=[], trades=[], cash=10_000, position=0.0,  # a short from flat is refused
        statuses={"o1": "cancelled"},
    ), id="long-only-refuses-short-from-flat"),
    pytest.param(dict(
        bars=UP, config=dict(long_only=True),
        script={0: [("market", "buy", 10, "entry")], 1: [("market", "sell", 15, "exit")]},
        # the sell of 15 is cut to the 10 held: no short is opened
        fills=[(1, "buy", 10, 102, 1.02), (2, "sell", 10, 104, 1.04)],
        trades=[("long", 10, 1, 2, 102, 104, 20, 2.06, 17.94, 17.94 / 1020 * 100, "exit", 1)],
        cash=10_017.94,  # 10000 − 1021.02 + 1040 − 1.04
        position=0.0,
    ), id="long-only-caps-sell-at-position"),
    pytest.param(dict(
        bars=UP, trade_from=2,
        script={0: [("market", "buy", 10, "early")], 1: [("market", "buy", 10, "early")],
                2: [("market", "buy", 10, "entry")], 3: [("close", "exit")]},
        # orders at closes 0 and 1 are warm-up and discarded; the one at close 2 fills at open 3
        fills=[(3, "buy", 10, 106, 1.06), (4, "sell", 10, 108, 1.08)],
        trades=[("long", 10, 3, 4, 106, 108, 20, 2.14, 17.86, 17.86 / 1060 * 100, "exit", 1)],
        cash=10_017.86,
        position=0.0,
        equity=[10_000, 9_998.94, 10_017.86],  # marks from bar 2 only: 10000 | 8938.94 + 1060 | flat
        n_orders=2,
    ), id="warm-up-orders-discarded"),
    pytest.param(dict(
        bars=[(100, 101, 99, 100), (102, 103, 101, 102), (104, 106, 103, 105), (106, 107, 104, 106),
              (100, 125, 90, 110), (110, 111, 109, 110)],
        script={0: [("market", "buy", 10, "entry")],
                1: [("stop", "sell", 95, "stop"), ("limit", "sell", 120, "target")],
                2: [("close", "exit")]},
        # the market exit at open 3 flattens; the protective stop and target die with the position,
        # so bar 4 (range 90..125, crossing both) fills nothing
        fills=[(1, "buy", 10, 102, 1.02), (3, "sell", 10, 106, 1.06)],
        trades=[("long", 10, 1, 3, 102, 106, 40, 2.08, 37.92, 37.92 / 1020 * 100, "exit", 2)],
        cash=10_037.92,
        position=0.0,
        statuses={"o1": "filled", "o2": "cancelled", "o3": "cancelled", "o4": "filled"},
    ), id="protective-exits-cancelled-when-flat"),
    pytest.param(dict(
        bars=UP,
        script={0: [("market", "buy", 10, "entry")], 1: [("market", "buy", 10, "add")], 3: [("close", "exit")]},
        # entries 10 @ 102 and 10 @ 104 (avg 103), exit 20 @ 108: gross 20 × 5 = 100; fees 1.02 + 1.04 + 2.16
        fills=[(1, "buy", 10, 102, 1.02), (2, "buy", 10, 104, 1.04), (4, "sell", 20, 108, 2.16)],
        trades=[("long", 20, 1, 4, 103, 108, 100, 4.22, 95.78, 95.78 / 2060 * 100, "exit", 3)],
        cash=10_095.78,  # 10000 − 1021.02 − 1041.04 + 2160 − 2.16
        position=0.0,
    ), id="scale-in-average-entry"),
    pytest.param(dict(
        bars=UP,
        script={0: [("market", "buy", 10, "entry")], 1: [("market", "sell", 4, "trim")], 2: [("close", "exit")]},
        # 4 @ 104 (+8) and 6 @ 106 (+24): exit avg (416 + 636) / 10 = 105.2; fees 1.02 + 0.416 + 0.636
        fills=[(1, "buy", 10, 102, 1.02), (2, "sell", 4, 104, 0.416), (3, "sell", 6, 106, 0.636)],
        trades=[("long", 10, 1, 3, 102, 105.2, 32, 2.072, 29.928, 29.928 / 1020 * 100, "exit", 2)],
        cash=10_029.928,  # 10000 − 1021.02 + 415.584 + 635.364
        position=0.0,
    ), id="partial-close-then-exit"),
    pytest.param(dict(
        bars=[(100, 100, 100, 100)] * 4,
        script={0: [("market", "buy", 10, "entry")], 1: [("close", "exit")]},
        # one price: gross 0, the round trip loses exactly the two fees 2 × 10 × 100 × 0.001
        fills=[(1, "buy", 10, 100, 1.0), (2, "sell", 10, 100, 1.0)],
        trades=[("long", 10, 1, 2, 100, 100, 0, 2, -2, -2 / 1000 * 100, "exit", 1)],
        cash=9_998,
        position=0.0,
    ), id="round-trip-at-one-price-loses-two-fees"),
    pytest.param(dict(
        bars=UP,
        script={0: [("market", "buy", 10, "entry")], 4: [("market", "buy", 1, "late")]},
        # still open at the end: no trade, marked at the last close 108, no exit fee;
        # the order decided at the last close never fills
        fills=[(1, "buy", 10, 102, 1.02)],
        trades=[],
        cash=8_978.98,
        position=10.0,
        equity=[10_000, 9_998.98, 10_028.98, 10_038.98, 10_058.98],
        statuses={"o1": "filled", "o2": "submitted"},
    ), id="open-position-marked-to-last-close"),
]


def _approx(x):
    return pytest.approx(x, rel=1e-12, abs=1e-9)


@pytest.mark.parametrize("case", CASES)
def test_ledger(case: dict) -> None:
    bars = make_bars(case["bars"])
    config = dict(cash_quote=10_000.0, fee_bps=10.0) | case.get("config", {})
    if "trade_from" in case:
        config["trade_from_ms"] = ts(case["trade_from"])
    engine, events = run(Scripted(case["script"]), bars, **config)

    got_fills = [(f.ts_ms, f.side.value, f.qty, f.price, f.fee_quote) for f in events.fills]
    want_fills = [(ts(i), side, _approx(q), _approx(p), _approx(fee)) for i, side, q, p, fee in case["fills"]]
    assert got_fills == want_fills

    got_trades = [(t.side, t.qty, t.entry_ts_ms, t.exit_ts_ms, t.entry_price, t.exit_price, t.gross_pnl_quote,
                   t.fees_quote, t.pnl_quote, t.return_pct, t.exit_reason, t.bars_held) for t in events.trades]
    want_trades = [(side, _approx(q), ts(e), ts(x), _approx(ep), _approx(xp), _approx(g), _approx(fees),
                    _approx(net), _approx(ret), reason, held)
                   for side, q, e, x, ep, xp, g, fees, net, ret, reason, held in case["trades"]]
    assert got_trades == want_trades

    assert engine.portfolio.cash_quote == _approx(case["cash"])
    assert engine.portfolio.position_qty == _approx(case["position"])
    final_equity = case["cash"] + case["position"] * bars[-1].close
    assert events.equity_quote[-1] == _approx(final_equity)
    # the portfolio's running totals agree with the hand-written fills
    assert engine.portfolio.fees_paid_quote == _approx(sum(f[4] for f in case["fills"]))
    assert engine.portfolio.realised_pnl_quote == _approx(sum(t[6] for t in case["trades"]))
    if "equity" in case:
        assert events.equity_quote == [_approx(e) for e in case["equity"]]
        first = case.get("trade_from", 0)
        assert events.equity_ts_ms == [ts(i) for i in range(first, len(bars))]
    if "statuses" in case:
        assert {cid: engine.broker.status[cid] for cid in case["statuses"]} == case["statuses"]
    if "n_orders" in case:
        assert len(events.orders) == case["n_orders"]
    # every order was decided at a close before (never at) the bar that filled it
    created = {o.client_id: o.created_ts_ms for o in events.orders}
    assert all(created[f.order_id] < f.ts_ms for f in events.fills)


def test_long_only_rejects_short_target_percent() -> None:
    engine = Engine(Scripted({0: [("target", -1.0, "entry")]}), BrokerConfig(long_only=True))
    with pytest.raises(OrderRejected, match="long_only"):
        engine.run(make_bars(UP))
    assert engine.events.orders == [] and engine.events.fills == []


def test_warm_up_orders_return_none_and_leave_no_pending() -> None:
    seen = []

    class Probe(Scripted):
        def on_bar(self, bar, ctx):  # noqa: ANN001
            seen.append((ctx.target_percent(1.0, "entry"), list(ctx.pending_orders)))
            ctx.cancel_all()

    engine, events = run(Probe({}), flat_bars(3, 100.0), trade_from_ms=ts(2))
    assert [order for order, _ in seen[:2]] == [None, None]
    assert [pending for _, pending in seen[:2]] == [[], []]
    assert seen[2][0] is not None and seen[2][0].created_ts_ms == ts(2)
    assert len(events.orders) == 1 and events.equity_ts_ms == [ts(2)]


def test_bad_order_sizes_and_prices_are_rejected() -> None:
    for action in (("market", "buy", 0.0, "x"), ("market", "buy", -1.0, "x"), ("stop", "sell", 0.0, "x"),
                   ("limit", "buy", -5.0, "x")):
        engine = Engine(Scripted({0: [action]}))
        with pytest.raises(OrderRejected):
            engine.run(make_bars(UP))


def test_bars_out_of_order_are_rejected() -> None:
    bars = make_bars(UP)
    for bad in ([bars[0], bars[2], bars[1]], [bars[0], bars[1], bars[1]]):
        with pytest.raises(DataError, match="out of order"):
            Engine(Scripted({})).run(bad)


def test_target_percent_never_moves_the_position_away_from_its_target() -> None:
    # cash 1006.005 + 1.002: buying 10 at 100 × 1.005 = 100.5 (fee 1.005) leaves 1.002 in cash.
    # Then target_percent(1.0) at open 100: at the raw price the target is
    # (1.002 + 1000) / (100 × 1.001) = 10.00002 > 10, so the side is BUY; but at the slipped buy price
    # the target is (1.002 + 1005) / (100.5 × 1.001) = 9.99997 < 10. Buying more moves away from it:
    # the right outcome is no fill (selling at 99.5 would want 10.00007 > 10, so no sale either).
    bars = flat_bars(4, 100.0)
    engine, events = run(Scripted({0: [("market", "buy", 10, "entry")], 1: [("target", 1.0, "rebalance")]}),
                         bars, cash_quote=1006.005 + 1.002, fee_bps=10, slippage_bps=50)
    assert len(events.fills) == 1
    assert engine.portfolio.position_qty == pytest.approx(10.0, rel=1e-12)
