"""Issue 8 items 8 and 9: how the live feed backs off (real ccxt against the loopback exchange).

* a candle missing while later ones exist is re-fetched on an exponential back-off, with sensible
  counts in the log (``re-fetch 2/5``, once ``re-fetching (13/2)``), and in websocket mode it no
  longer makes the feed poll REST on every socket message;
* a Retry-After shorter than the rate-limit default is honoured, with a floor of 1 s and jitter
  that never retries sooner than the exchange asked.
"""
from __future__ import annotations

import logging
import re
import threading
import time

import pytest

from feeds.ccxt_feed import CcxtCandleClient, open_live_feed
from feeds.live_candles import LIVE_RETRY_POLICY
from feeds.errors import RateLimitedError
from feeds.retry import RetryPolicy, call_with_retry

from .conftest import FAST_RETRY, TIMEOUT_MS, take

SPEED = 600.0  # one 1m candle per 0.1 s


def _klines(srv) -> list[dict]:
    return [r for r in srv.requests if r["path"].endswith("/klines")]


@pytest.mark.parametrize("ws", [False, True], ids=["rest", "ws"])
def test_a_missing_candle_is_refetched_on_a_back_off_then_skipped(bars, make_server, caplog, ws: bool) -> None:
    hole = 40
    data = bars[:hole] + bars[hole + 1:]  # the exchange never has candle 40
    srv = make_server(data, 30, speed=SPEED, ws_push_interval_s=0.01)
    stop = threading.Event()
    kw = dict(ws=True, ws_stale_timeout_s=5.0) if ws else {}
    feed = open_live_feed("binance", "BTC/USDT", "1m", data[25].ts_ms, exchange_url=srv.url, timeout_ms=TIMEOUT_MS,
                          stop_event=stop, poll_interval_s=0.05, ws_grace_ms=120_000, retry_policy=FAST_RETRY,
                          **kw)
    with caplog.at_level(logging.INFO, logger="feeds.live"):
        got = take(feed, 30, stop_event=stop, timeout_s=30)
    assert got == data[25:55]
    assert feed.gaps == [(bars[hole].ts_ms, bars[hole + 1].ts_ms)]
    counts = [tuple(map(int, m.groups())) for r in caplog.records
              for m in [re.search(r"re-fetch (\d+)/(\d+)", r.getMessage())] if m]
    assert counts == [(k, 5) for k in range(1, 6)], counts  # 0.25+0.5+1+2+1.25 s = the 5 s minimum wait
    # Requests while the hole was waited out: the back-off schedule, not one per poll or socket message.
    # From the request that found the hole (the last one before "re-fetch 1/5" was logged: a poll made
    # as candle 41 closed may not have been served it yet, and polls again soon) until candle 40 was
    # given up. Both clocks are time.time(); at 600x, the server clock cannot tell these apart.
    found_at = next(r.created for r in caplog.records if "re-fetch 1/" in r.getMessage())
    asking = [r for r in _klines(srv) if int(r["params"].get("startTime", 0)) == bars[hole].ts_ms]
    refetches = [r for r in asking if r["time"] > found_at]
    assert 5 <= len(refetches) <= 7, len(refetches)
    waiting = [[r for r in asking if r["time"] <= found_at][-1], *refetches]
    gaps_s = [b["time"] - a["time"] for a, b in zip(waiting, waiting[1:])]
    assert min(gaps_s) >= 0.2, gaps_s


def test_retry_policy_honours_a_shorter_retry_after_with_a_floor_and_upward_jitter() -> None:
    policy = RetryPolicy(rate_limit_delay_s=30.0, max_delay_s=60.0, jitter_ratio=0.1)
    for _ in range(200):
        d = policy.delay_s(1, RateLimitedError("429", retry_after_s=2.0))
        assert 2.0 <= d <= 2.2  # the exchange's 2 s, not the 30 s default; jitter only later
        assert 1.0 <= policy.delay_s(1, RateLimitedError("429", retry_after_s=0.0)) <= 1.1  # the floor
        assert 30.0 * 0.9 <= policy.delay_s(1, RateLimitedError("429")) <= 30.0 * 1.1  # no hint: the default
    assert policy.delay_s(1, RateLimitedError("418", retry_after_s=600.0)) <= 66.0  # capped at max_delay_s
    spread = {round(policy.delay_s(1, RateLimitedError("429", retry_after_s=2.0)), 6) for _ in range(50)}
    assert len(spread) > 10  # jittered: many clients do not retry in lock-step


@pytest.mark.parametrize("kind, retry_after, expected_s", [("http_429", "2", 2.0), ("http_418", "0", 1.0),
                                                           ("http_429", "Thu, 01 Jan 1970 00:00:00 GMT", 1.0)])
def test_live_feed_waits_what_retry_after_says(bars, make_server, kind: str, retry_after: str,
                                               expected_s: float) -> None:
    """The live retry policy would wait 30 s after a rate limit; a 2 s Retry-After is honoured
    (a 0 s one or a date in the past gets the 1 s floor)."""
    srv = make_server(bars, 30, speed=1.0)
    client = CcxtCandleClient.connect("binance", srv.url, TIMEOUT_MS)
    try:
        client.check_symbol("BTC/USDT")
        srv.clear_requests()
        srv.inject(kind, count=1, path="/time", retry_after=retry_after)
        started = time.monotonic()
        assert call_with_retry(client.server_time_ms, what="fetch_time", policy=LIVE_RETRY_POLICY) > 0
        elapsed = time.monotonic() - started
    finally:
        client.close()
    times = [r["time"] for r in srv.requests if r["path"].endswith("/time")]
    assert len(times) == 2 and [r["fault"] for r in srv.requests][:1] == [kind]
    waited = times[1] - times[0]
    assert expected_s <= waited <= expected_s * 1.1 + 0.3, waited
    assert elapsed < 5
