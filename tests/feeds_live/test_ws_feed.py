"""LiveCandleFeed with the websocket (ccxt.pro watch_ohlcv) against the loopback exchange."""
from __future__ import annotations

import threading

from feeds.ccxt_feed import open_live_feed

from .conftest import FAST_RETRY, TIMEOUT_MS, take

SPEED = 600.0  # one 1m candle per 0.1 s of real time


def ws_feed(srv, since_ms: int, stop: threading.Event, sources: list[str]):
    return open_live_feed("binance", "BTC/USDT", "1m", since_ms, exchange_url=srv.url,
                          timeout_ms=TIMEOUT_MS, stop_event=stop, ws=True, ws_stale_timeout_s=0.3,
                          poll_interval_s=0.1, ws_grace_ms=120_000, retry_policy=FAST_RETRY,
                          on_candle=lambda bar, timing: sources.append(timing.source))


def subscriptions(srv) -> int:
    return sum(1 for r in srv.requests if r["method"] == "WS" and r["params"].get("method") == "SUBSCRIBE")


def test_ws_delivers_closed_candles_in_order_after_rest_backfill(bars, make_server) -> None:
    srv = make_server(bars, 30, speed=SPEED, ws_push_interval_s=0.01)
    stop, sources = threading.Event(), []
    feed = ws_feed(srv, bars[20].ts_ms, stop, sources)
    got = take(feed, 22, stop_event=stop)
    assert got == bars[20:42]
    assert sources[:10] == ["rest"] * 10  # back-fill
    assert sources[10:].count("ws") >= 6  # then the socket (REST only as a safety net)
    assert subscriptions(srv) >= 1


def test_quiet_socket_reconnects_and_catches_up(bars, make_server) -> None:
    srv = make_server(bars, 30, speed=SPEED, ws_push_interval_s=0.01)
    stop, sources = threading.Event(), []
    feed = ws_feed(srv, bars[25].ts_ms, stop, sources)

    def on_bar(i: int, bar) -> None:
        if i == 9:
            srv.inject("ws_quiet")  # open sockets stop pushing, for good

    got = take(feed, 24, stop_event=stop, on_bar=on_bar)
    assert got == bars[25:49]
    assert feed.stats["ws_disconnects"] >= 1
    assert subscriptions(srv) >= 2  # it reconnected ...
    assert "ws" in sources[14:]  # ... and candles flow over the new socket


def test_dropped_socket_reconnects_and_catches_up(bars, make_server) -> None:
    srv = make_server(bars, 30, speed=SPEED, ws_push_interval_s=0.01)
    stop, sources = threading.Event(), []
    feed = ws_feed(srv, bars[25].ts_ms, stop, sources)

    def on_bar(i: int, bar) -> None:
        if i == 9:
            srv.inject("ws_drop")
        if i == 14:
            srv.inject("refuse", duration_s=0.4)  # REST and socket down together

    got = take(feed, 26, stop_event=stop, on_bar=on_bar)
    assert got == bars[25:51]
    assert subscriptions(srv) >= 2
