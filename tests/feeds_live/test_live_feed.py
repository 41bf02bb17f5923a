"""LiveCandleFeed in REST polling mode against the loopback exchange (real ccxt).

The reference for every fault test is the source data itself: whatever goes
wrong on the wire, the feed must yield exactly ``bars[since:since+n]``.
"""
from __future__ import annotations

import threading
import time

import pytest

from feeds.ccxt_feed import open_live_feed
from feeds.errors import FatalFeedError

from .conftest import FAST_RETRY, TF_MS, TIMEOUT_MS, take


def feed_for(srv, since_ms: int, stop: threading.Event, exchange_id: str = "binance", **kw):
    kw.setdefault("poll_interval_s", 0.02)
    kw.setdefault("retry_policy", FAST_RETRY)
    return open_live_feed(exchange_id, "BTC/USDT", "1m", since_ms, exchange_url=srv.url,
                          timeout_ms=TIMEOUT_MS, stop_event=stop, **kw)


@pytest.mark.parametrize("exchange_id", ["binance", "bybit"])
def test_backfills_then_follows_live_candles_in_order(bars, make_server, exchange_id) -> None:
    srv = make_server(bars, 40)
    stop = threading.Event()
    feed = feed_for(srv, bars[20].ts_ms, stop, exchange_id)
    got = take(feed, 30, stop_event=stop)
    assert got == bars[20:50]
    assert feed.stats["rest"] == 30
    for bar in got:  # every bar was closed by the server clock when we had it
        assert bar.ts_ms + TF_MS <= srv.server_time_ms()


def test_never_yields_the_candle_in_progress(bars, make_server) -> None:
    """Clock frozen 1 ms before candle 30 closes: the feed yields 25..29 and then waits."""
    srv = make_server(bars, 30, speed=0.0, offset_ms=TF_MS - 1)
    stop = threading.Event()
    feed = feed_for(srv, bars[25].ts_ms, stop)
    got: list = []
    consumer = threading.Thread(target=lambda: got.extend(feed))
    consumer.start()
    time.sleep(0.5)
    assert got == bars[25:30]  # not the partial candle 30, however often it polled
    srv.set_time(bars[31].ts_ms)  # candle 30 closes
    deadline = time.monotonic() + 5
    while len(got) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    consumer.join(2)
    assert not consumer.is_alive(), "stop event did not end the iteration promptly"
    assert got == bars[25:31]  # candle 30 with its FINAL values


def test_stop_event_ends_iteration_promptly_while_idle(bars, make_server) -> None:
    srv = make_server(bars, 30, speed=0.0)
    stop = threading.Event()
    feed = feed_for(srv, bars[30].ts_ms, stop, poll_interval_s=30.0)  # would sleep long
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    assert list(feed) == []
    assert time.monotonic() - started < 1.5
    with pytest.raises(StopIteration):
        next(feed)


def test_idle_between_candles_does_not_busy_wait(bars, make_server) -> None:
    srv = make_server(bars, 30, speed=1.0)  # real-time clock: the next close is ~30 s away
    stop = threading.Event()
    feed = feed_for(srv, bars[30].ts_ms, stop, poll_interval_s=0.2)
    consumer = threading.Thread(target=lambda: list(feed))
    cpu0 = time.process_time()
    consumer.start()
    time.sleep(1.0)
    stop.set()
    consumer.join(2)
    polls = [r for r in srv.requests if r["path"] == "/api/v3/time"]
    assert len(polls) <= 8  # one clock check per poll interval, not a spin
    assert time.process_time() - cpu0 < 0.5


def test_gap_after_outage_is_backfilled_in_order(bars, make_server) -> None:
    """The exchange is unreachable for ~0.6 s (~12 candles close meanwhile); after it comes
    back, every missed candle is yielded, in order, before newer ones."""
    srv = make_server(bars, 40)
    stop = threading.Event()
    feed = feed_for(srv, bars[35].ts_ms, stop)
    times = []

    def on_bar(i: int, bar) -> None:
        times.append(feed.last_timing)
        if i == 8:
            srv.inject("refuse", duration_s=0.6)

    got = take(feed, 30, stop_event=stop, on_bar=on_bar)
    assert got == bars[35:65]
    # after the outage several candles came out of one poll (same server time)
    batch_sizes: dict = {}
    for t in times[8:]:
        batch_sizes[t.server_time_ms] = batch_sizes.get(t.server_time_ms, 0) + 1
    assert max(batch_sizes.values()) >= 5


@pytest.mark.parametrize("fault, kwargs", [
    ("http_500", {"count": 2}), ("http_503", {"count": 2}), ("http_418", {"count": 1}),
    ("http_429", {"count": 2}), ("timeout", {"count": 1}), ("bad_json", {"count": 3}),
    ("duplicate_candle", {"count": 3}), ("missing_candle", {"count": 2}),
    ("refuse", {"duration_s": 0.4}),
])
def test_faults_do_not_change_the_sequence(bars, make_server, fault, kwargs) -> None:
    srv = make_server(bars, 30)
    stop = threading.Event()
    if fault not in ("refuse", "missing_candle"):
        srv.inject(fault, **kwargs)  # hits the very first requests (markets, time, back-fill)
    feed = feed_for(srv, bars[20].ts_ms, stop)

    def on_bar(i: int, bar) -> None:
        if i in (5, 12):  # during back-fill, then while following live candles
            srv.inject(fault, **kwargs)

    got = take(feed, 24, stop_event=stop, on_bar=on_bar)
    assert got == bars[20:44]
    assert not feed.gaps
    # the first injection always fires; later ones usually do too (unless, on a loaded
    # machine, one page already held every remaining candle)
    assert srv.fault_hits.get(fault, 0) >= 1, f"the fault fired {srv.fault_hits} times"


def test_exchange_gap_is_skipped_and_reported_not_waited_for_forever(bars, make_server) -> None:
    """Candles 35-37 do not exist on the exchange (e.g. a maintenance window)."""
    holed = bars[:35] + bars[38:]
    srv = make_server(holed, 30)
    stop = threading.Event()
    feed = feed_for(srv, bars[25].ts_ms, stop)
    got = take(feed, 20, stop_event=stop)
    assert got == bars[25:35] + bars[38:48]
    assert feed.gaps == [(bars[35].ts_ms, bars[38].ts_ms)]


def test_gap_in_backfill_is_skipped_too(bars, make_server) -> None:
    holed = bars[:22] + bars[23:]
    srv = make_server(holed, 60)
    stop = threading.Event()
    feed = feed_for(srv, bars[20].ts_ms, stop)
    got = take(feed, 10, stop_event=stop)
    assert got == bars[20:22] + bars[23:31]
    assert feed.gaps == [(bars[22].ts_ms, bars[23].ts_ms)]


def test_backfill_paginates_a_long_outage(make_server) -> None:
    from testkit.candles import random_walk_bars
    data = random_walk_bars(2600, seed=3)
    srv = make_server(data, 2500, speed=0.0)
    stop = threading.Event()
    feed = feed_for(srv, data[0].ts_ms, stop)
    got = take(feed, 2500, stop_event=stop)
    assert got == data[:2500]
    kline_calls = [r for r in srv.requests if r["path"] == "/api/v3/klines"]
    assert [r["params"]["limit"] for r in kline_calls][:3] == ["1000"] * 3
    assert len(kline_calls) == 3


@pytest.mark.parametrize("exchange_id", ["binance", "bybit"])
def test_bad_symbol_is_fatal_quickly_with_a_clear_message(bars, make_server, exchange_id) -> None:
    srv = make_server(bars, 30)
    stop = threading.Event()
    feed = open_live_feed(exchange_id, "NOPE/USDT", "1m", bars[20].ts_ms, exchange_url=srv.url,
                          timeout_ms=TIMEOUT_MS, stop_event=stop, poll_interval_s=0.03)
    started = time.monotonic()
    with pytest.raises(FatalFeedError, match=r"has no market 'NOPE/USDT'"):
        next(feed)
    assert time.monotonic() - started < 2.0
