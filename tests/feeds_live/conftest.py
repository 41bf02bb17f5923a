"""Fixtures for the live-feed tests: real ccxt against the loopback exchange.

Every test here runs under a guard that fails any socket connect to anything but
127.0.0.1 (or a unix socket), so no test can reach the internet even by mistake.
The exchange clock is accelerated (a 1m candle closes every 0.05-0.1 s of real
time), timeouts and back-offs are short, so the folder runs in seconds.
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Callable, Iterator

import pytest

from domain.types import Bar
from feeds.retry import RetryPolicy
from testkit.candles import random_walk_bars
from testkit.loopback_exchange import LoopbackExchange

TF_MS = 60_000
FAST_RETRY = RetryPolicy(base_delay_s=0.02, max_delay_s=0.1, rate_limit_delay_s=0.1, jitter_ratio=0.0,
                         max_attempts=None, max_elapsed_s=20.0)
TIMEOUT_MS = 500  # client timeout; the server's `timeout` fault stalls longer than this
STALL_S = 1.2


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if anything tries to connect to a non-loopback address."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(address: object) -> None:
        if isinstance(address, tuple) and address and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"network access outside loopback attempted: {address!r}")

    def connect(self: socket.socket, address: object) -> None:
        check(address)
        return real_connect(self, address)  # type: ignore[arg-type]

    def connect_ex(self: socket.socket, address: object) -> int:
        check(address)
        return real_connect_ex(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def bars() -> list[Bar]:
    """600 seeded random-walk 1m candles (10 hours), contiguous."""
    return random_walk_bars(600, seed=7)


@pytest.fixture
def make_server() -> Iterator[Callable[..., LoopbackExchange]]:
    """Factory: ``make_server(bars, start_index=..., speed=..., **kw)``, stopped after the test.

    ``start_index=i`` starts the server clock ``offset_ms`` into candle i, so candles
    ``< i`` are closed and candle i is in progress.
    """
    servers: list[LoopbackExchange] = []

    def make(data: list[Bar], start_index: int, *, speed: float = 1200.0, offset_ms: int = 30_000,
             **kwargs: object) -> LoopbackExchange:
        kwargs.setdefault("stall_s", STALL_S)
        srv = LoopbackExchange(data, "1m", speed=speed, start_at_ms=data[start_index].ts_ms + offset_ms,
                               **kwargs)  # type: ignore[arg-type]
        servers.append(srv.start())
        return srv

    yield make
    for srv in servers:
        srv.stop()


def take(feed: Iterator[Bar], n: int, *, stop_event: threading.Event, timeout_s: float = 15.0,
         on_bar: Callable[[int, Bar], None] | None = None) -> list[Bar]:
    """Consume ``n`` bars (then set the stop event); fail the test if it takes > timeout_s."""
    watchdog = threading.Timer(timeout_s, stop_event.set)
    watchdog.start()
    got: list[Bar] = []
    started = time.monotonic()
    try:
        for bar in feed:
            got.append(bar)
            if on_bar is not None:
                on_bar(len(got), bar)
            if len(got) >= n:
                break
    finally:
        watchdog.cancel()
        stop_event.set()
        close = getattr(feed, "close", None)
        if close is not None:
            close()
    assert len(got) == n, f"feed gave {len(got)}/{n} bars in {time.monotonic() - started:.1f}s"
    return got
