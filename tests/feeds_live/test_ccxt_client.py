"""make_exchange and CcxtCandleClient against the loopback exchange (real ccxt, no mocks)."""
from __future__ import annotations

import ast
import inspect
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import feeds.ccxt_feed as ccxt_feed
from feeds.ccxt_feed import CcxtCandleClient, make_exchange
from feeds.errors import FatalFeedError, RateLimitedError, RetryableFeedError

from .conftest import TF_MS, TIMEOUT_MS


def all_urls(api: dict) -> list[str]:
    out: list[str] = []
    for value in api.values():
        out.extend(all_urls(value) if isinstance(value, dict) else [value] if isinstance(value, str) else [])
    return out


@pytest.mark.parametrize("exchange_id", ["binance", "bybit"])
@pytest.mark.parametrize("ws", [False, True])
def test_every_api_url_is_rewritten_onto_the_loopback_host(exchange_id: str, ws: bool) -> None:
    ex = make_exchange(exchange_id, "http://127.0.0.1:1234", 1000, ws=ws)
    urls = all_urls(ex.urls["api"])
    assert urls and all(urlsplit(u).netloc == "127.0.0.1:1234" for u in urls)
    if ws and exchange_id == "binance":  # ccxt.pro recognises spot streams by '/stream' in the URL
        assert ex.urls["api"]["ws"]["spot"] == "ws://127.0.0.1:1234/stream/ws"
    assert not ex.enableRateLimit


def test_api_keys_come_from_env_only_and_never_with_exchange_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINANCE_API_KEY", "k-123")
    monkeypatch.setenv("BINANCE_API_SECRET", "s-456")
    real = make_exchange("binance", None, 1000)  # no network: construction only
    assert (real.apiKey, real.secret) == ("k-123", "s-456") and real.enableRateLimit
    loop = make_exchange("binance", "http://127.0.0.1:1234", 1000)
    assert not loop.apiKey and not loop.secret


def test_bad_exchange_url_and_unknown_exchange_are_fatal() -> None:
    with pytest.raises(FatalFeedError, match="exchange_url"):
        make_exchange("binance", "127.0.0.1:80", 1000)
    with pytest.raises(FatalFeedError, match="unknown exchange"):
        make_exchange("no-such-exchange", None, 1000)


def test_no_code_path_places_orders() -> None:
    """The feed module never calls an order/withdraw method of ccxt."""
    forbidden = {"create_order", "createOrder", "edit_order", "cancel_order", "withdraw", "transfer",
                 "create_market_order", "create_limit_order"}
    for module in (ccxt_feed, __import__("feeds.live_candles", fromlist=["x"]),
                   __import__("feeds.download", fromlist=["x"])):
        tree = ast.parse(Path(inspect.getfile(module)).read_text())
        names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        names |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert not names & forbidden, module.__name__


def test_only_the_ccxt_feed_imports_ccxt() -> None:
    root = Path(ccxt_feed.__file__).parent
    importers = []
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(m == "ccxt" or m.startswith("ccxt.") for m in mods):
                importers.append(path.name)
    assert set(importers) == {"ccxt_feed.py"}


@pytest.mark.parametrize("exchange_id", ["binance", "bybit"])
def test_fetch_closed_candles_never_returns_the_candle_in_progress(bars, make_server, exchange_id) -> None:
    srv = make_server(bars, 100, speed=0.0, offset_ms=TF_MS - 1)  # 1 ms before candle 100 closes
    client = CcxtCandleClient.connect(exchange_id, srv.url, TIMEOUT_MS)
    got = client.fetch_closed_candles("BTC/USDT", "1m", bars[90].ts_ms, 1000)
    assert got == bars[90:100]
    raw = client.fetch_raw_candles("BTC/USDT", "1m", bars[90].ts_ms, 1000)
    assert raw[-1][0] == bars[100].ts_ms and raw[-1][4] != bars[100].close  # served, partial
    srv.set_time(bars[101].ts_ms)  # candle 100 closes exactly now (ts + tf <= server time)
    assert client.fetch_closed_candles("BTC/USDT", "1m", bars[90].ts_ms, 1000) == bars[90:101]
    assert client.server_time_ms() == bars[101].ts_ms


def test_duplicates_are_dropped(bars, make_server) -> None:
    srv = make_server(bars, 100, speed=0.0)
    client = CcxtCandleClient.connect("binance", srv.url, TIMEOUT_MS)
    srv.inject("duplicate_candle", count=1)
    raw = client.fetch_raw_candles("BTC/USDT", "1m", bars[90].ts_ms, 1000)
    assert len(raw) == 12  # 11 candles (10 closed + 1 in progress) + the duplicate, ccxt keeps it
    assert client.fetch_closed_candles("BTC/USDT", "1m", bars[90].ts_ms, 1000) == bars[90:100]


@pytest.mark.parametrize("fault, error", [
    ("http_500", RetryableFeedError), ("http_503", RetryableFeedError), ("http_418", RateLimitedError),
    ("http_429", RateLimitedError), ("timeout", RetryableFeedError), ("bad_json", RetryableFeedError),
])
@pytest.mark.parametrize("exchange_id", ["binance", "bybit"])
def test_faults_map_to_retryable_errors(bars, make_server, exchange_id, fault, error) -> None:
    srv = make_server(bars, 100, speed=0.0)
    client = CcxtCandleClient.connect(exchange_id, srv.url, TIMEOUT_MS)
    client.load_markets()
    for call in (client.server_time_ms,
                 lambda: client.fetch_closed_candles("BTC/USDT", "1m", bars[90].ts_ms, 100,
                                                     server_time_ms=bars[100].ts_ms)):
        srv.inject(fault, count=1)
        with pytest.raises(error) as info:
            call()
        assert not isinstance(info.value, FatalFeedError)
        if error is RateLimitedError:
            assert info.value.retry_after_s == 1.0  # the server's Retry-After header
    assert client.fetch_closed_candles("BTC/USDT", "1m", bars[90].ts_ms, 100) == bars[90:100]


def test_bad_json_on_markets_is_retryable_not_a_bad_symbol(bars, make_server) -> None:
    """ccxt turns a truncated exchangeInfo into an empty market list; that must not look fatal."""
    srv = make_server(bars, 100, speed=0.0)
    client = CcxtCandleClient.connect("binance", srv.url, TIMEOUT_MS)
    srv.inject("bad_json", count=1, path="exchangeInfo")
    with pytest.raises(RetryableFeedError):
        client.check_symbol("BTC/USDT")
    client.check_symbol("BTC/USDT")  # loads again and succeeds


def test_connection_refused_is_retryable(bars, make_server) -> None:
    srv = make_server(bars, 100, speed=0.0)
    client = CcxtCandleClient.connect("binance", srv.url, TIMEOUT_MS)
    client.load_markets()
    srv.inject("refuse", duration_s=0.5)
    with pytest.raises(RetryableFeedError):
        client.server_time_ms()
    assert srv.wait_listening(5)
    assert client.server_time_ms() > 0


@pytest.mark.parametrize("exchange_id", ["binance", "bybit"])
def test_bad_symbol_and_bad_interval_are_fatal_with_a_clear_message(bars, make_server, exchange_id) -> None:
    srv = make_server(bars, 100, speed=0.0)
    client = CcxtCandleClient.connect(exchange_id, srv.url, TIMEOUT_MS)
    started = time.monotonic()
    with pytest.raises(FatalFeedError, match=r"has no market 'ETH/USDT'"):
        client.fetch_closed_candles("ETH/USDT", "1m", bars[90].ts_ms, 10)
    with pytest.raises(FatalFeedError, match="rejected the request|ExchangeError|BadRequest"):
        client.fetch_closed_candles("BTC/USDT", "5m", bars[90].ts_ms, 10)  # server only has 1m
    assert time.monotonic() - started < 2.0
