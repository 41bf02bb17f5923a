"""Live candle feed: closed exchange candles, in order, forever (until stopped).

No ccxt import here: the feed talks to a :class:`CandleSource` (REST) and an
optional :class:`KlineStream` (websocket), both implemented in ``feeds/ccxt_feed.py``
(use :func:`feeds.ccxt_feed.open_live_feed` to get a ready feed).

Timing contract (DESIGN.md "Bars and time"): a bar is yielded only once the
*exchange's* clock says it closed (``ts_ms + timeframe <= server time``), strictly
increasing in ``ts_ms``, each open time exactly once. Re-sent candles are dropped;
after an outage every candle missed is back-filled from REST, in order, before
anything newer. A candle the exchange does not have (a real maintenance gap) is
skipped, and logged and recorded in :attr:`LiveCandleFeed.gaps`, once newer candles
exist and ``gap_refetches`` re-fetches still lack it.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol

from domain.types import Bar
from domain.times import floor_to_timeframe, is_aligned, timeframe_ms
from feeds.errors import FatalFeedError, FeedError, FeedStopped
from feeds.retry import RetryPolicy, call_with_retry, interruptible_sleep

log = logging.getLogger("feeds.live")

# Live feeds keep trying through outages of any length (a paper trader should resume by
# itself); each retry is logged and SIGTERM (the stop event) ends the wait at once.
HOLE_FIRST_WAIT_S = 0.25  # first re-fetch of a candle missing while later ones exist; doubles each time
LIVE_RETRY_POLICY = RetryPolicy(base_delay_s=1.0, max_delay_s=60.0, rate_limit_delay_s=30.0,
                                max_attempts=None, max_elapsed_s=None)


class CandleSource(Protocol):
    def check_symbol(self, symbol: str) -> None: ...

    def server_time_ms(self) -> int: ...

    def fetch_closed_candles(self, symbol: str, timeframe: str, since_ms: int | None,
                             limit: int | None = 1000, *, server_time_ms: int | None = None
                             ) -> list[Bar]: ...


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """What the websocket reports: ``closed`` (with ``bar``), ``disconnected`` or ``fatal``."""

    kind: str
    bar: Bar | None = None
    detail: str = ""
    error: FeedError | None = None


class KlineStream(Protocol):
    def start(self) -> None: ...

    def get(self, timeout_s: float) -> StreamEvent | None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class CandleTiming:
    """When a yielded candle became available: its source and local receive time."""

    ts_ms: int
    source: str  # "rest" or "ws"
    received_unix_s: float  # time.time() when the feed got it
    server_time_ms: int | None  # exchange clock of the REST poll that found it (None for ws)


class LiveCandleFeed(Iterator[Bar]):
    """Iterator of closed candles starting at ``since_ms`` (the next candle the caller needs).

    REST mode: after each candle it sleeps until the next one should close by the
    exchange's clock (+``post_close_delay_s``), but never longer than
    ``poll_interval_s`` (the real clock and the exchange's may run at different
    speeds, e.g. against the accelerated loopback exchange) and never less than
    ``min_wait_s``. With a ``stream`` (websocket) candles normally arrive on the
    socket; REST catches up at start, after any disconnect or hole, and whenever a
    candle is ``ws_grace_ms`` (exchange time) overdue.

    Transient failures are retried through ``retry_policy`` (default: forever, with
    back-off); fatal ones propagate. Setting ``stop_event`` ends iteration promptly
    (StopIteration). ``on_candle(bar, timing)`` is called before each yield.
    """

    def __init__(self, client: CandleSource, symbol: str, timeframe: str, since_ms: int, *,
                 stop_event: threading.Event | None = None, poll_interval_s: float = 10.0,
                 min_wait_s: float = 0.02, post_close_delay_s: float = 0.25, page_limit: int = 1000,
                 retry_policy: RetryPolicy | None = None, gap_refetches: int = 2, gap_min_wait_s: float = 5.0,
                 stream: KlineStream | None = None, ws_grace_ms: int = 5_000,
                 on_candle: Callable[[Bar, CandleTiming], None] | None = None,
                 sleep: Callable[[float], object] | None = None, owns_client: bool = False) -> None:
        if poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s must be > 0, got {poll_interval_s}")
        self.client, self.symbol, self.timeframe = client, symbol, timeframe
        self.tf_ms = timeframe_ms(timeframe)
        if not is_aligned(since_ms, self.tf_ms):
            aligned = floor_to_timeframe(since_ms, self.tf_ms) + self.tf_ms
            log.info("since_ms %d is not a %s open time; starting at %d", since_ms, timeframe, aligned)
            since_ms = aligned
        self.next_ts_ms = since_ms  # open time of the next candle to yield
        self.stop_event = stop_event or threading.Event()
        self.poll_interval_s, self.min_wait_s = poll_interval_s, min_wait_s
        self.post_close_delay_s, self.page_limit = post_close_delay_s, page_limit
        self.retry_policy = retry_policy or LIVE_RETRY_POLICY
        self.gap_refetches, self.ws_grace_ms = gap_refetches, ws_grace_ms
        self.gap_min_wait_s = gap_min_wait_s
        self.stream, self.on_candle, self._sleep = stream, on_candle, sleep
        self._owns_client = owns_client
        self._pending: deque[tuple[Bar, CandleTiming]] = deque()
        self._hole_seen: dict[int, tuple[int, float]] = {}  # open ts -> (re-fetches, first seen)
        self._rest_not_before = 0.0  # monotonic: while a hole is waited out, no REST poll before this
        self._symbol_checked = False
        self._stream_started = False
        self._caught_up = False  # ws mode: REST back-fill done since the last (re)connect
        self._closed = False
        self.gaps: list[tuple[int, int]] = []  # (first missing open ts, first present open ts)
        self.stats = {"rest": 0, "ws": 0, "rest_polls": 0, "ws_disconnects": 0, "duplicates": 0}
        self.last_timing: CandleTiming | None = None

    # ------------------------------------------------------------------ iterator protocol
    def __iter__(self) -> "LiveCandleFeed":
        return self

    def __next__(self) -> Bar:
        try:
            return self._next()
        except FeedStopped:
            self.close()
            raise StopIteration from None
        except FatalFeedError:
            self.close()
            raise

    def close(self) -> None:
        """Stop the websocket thread and, if this feed owns it, the client. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.stream is not None:
            self.stream.close()
        if self._owns_client and hasattr(self.client, "close"):
            self.client.close()  # type: ignore[attr-defined]

    def __enter__(self) -> "LiveCandleFeed":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ core loop
    def _next(self) -> Bar:
        if not self._symbol_checked:  # a bad symbol fails now, not when the first candle closes
            self._retry("load_markets", lambda: self.client.check_symbol(self.symbol))
            self._symbol_checked = True
        while True:
            if self.stop_event.is_set() or self._closed:
                raise FeedStopped("stop requested")
            if self._pending:
                return self._emit(*self._pending.popleft())
            if self.stream is None:
                wait_s = self._refill(grace_ms=0)
                if not self._pending and interruptible_sleep(wait_s, self.stop_event, self._sleep):
                    raise FeedStopped("stop requested")
                continue
            bar = self._next_from_stream()
            if bar is not None:
                return bar

    def _emit(self, bar: Bar, timing: CandleTiming) -> Bar:
        self.next_ts_ms = bar.ts_ms + self.tf_ms
        self._hole_seen.clear()
        self._rest_not_before = 0.0
        self.stats[timing.source] += 1
        self.last_timing = timing
        if self.on_candle is not None:
            self.on_candle(bar, timing)
        return bar

    def _retry(self, what: str, fn: Callable[[], Any]) -> Any:
        return call_with_retry(fn, what=f"{what} {self.symbol} {self.timeframe}",
                               policy=self.retry_policy, stop_event=self.stop_event, sleep=self._sleep,
                               logger=log)

    def _refill(self, grace_ms: int) -> float:
        """One REST poll. Queue the closed candles from ``next_ts_ms`` on (contiguous run only)
        and return 0, or return how long to wait before polling again."""
        self.stats["rest_polls"] += 1
        server_now = self._retry("fetch_time", self.client.server_time_ms)
        next_close = self.next_ts_ms + self.tf_ms
        if server_now < next_close + grace_ms:
            return self._wait_until_close_s(server_now)
        bars = self._retry("fetch_ohlcv", lambda: self.client.fetch_closed_candles(
            self.symbol, self.timeframe, self.next_ts_ms, self.page_limit, server_time_ms=server_now))
        bars = [b for b in bars if b.ts_ms >= self.next_ts_ms]
        if not bars:
            # Closed by the clock but not served yet (exchange lag, or a candle it lacks while
            # the next one is still in progress): ask again shortly.
            return self.poll_interval_s
        first = bars[0].ts_ms
        if first > self.next_ts_ms:
            seen, since = self._hole_seen.get(self.next_ts_ms, (0, time.monotonic()))
            seen += 1
            self._hole_seen[self.next_ts_ms] = (seen, since)
            # Skip only after several re-fetches AND some wall time: a glitch of a fraction of a
            # second must not become a permanent gap (and a backtest/paper mismatch). The
            # re-fetches back off exponentially, so a hole costs a handful of requests, not one
            # per poll interval (or, in websocket mode, one per socket message).
            schedule = self._hole_schedule_s()
            if seen <= len(schedule):
                wait_s = schedule[seen - 1]
                log.info("%s %s: candle %d missing while later ones exist; re-fetch %d/%d in %.2fs",
                         self.symbol, self.timeframe, self.next_ts_ms, seen, len(schedule), wait_s)
                self._rest_not_before = time.monotonic() + wait_s
                return wait_s
            missing = (first - self.next_ts_ms) // self.tf_ms
            log.warning("%s %s: exchange has no candle(s) from %d to %d (%d missing); skipping the gap",
                        self.symbol, self.timeframe, self.next_ts_ms, first - self.tf_ms, missing)
            self.gaps.append((self.next_ts_ms, first))
            self.next_ts_ms = first
        received = time.time()
        expect = self.next_ts_ms
        for bar in bars:
            if bar.ts_ms != expect:
                break  # a hole further on: handled by the next poll, after these are yielded
            self._pending.append((bar, CandleTiming(bar.ts_ms, "rest", received, server_now)))
            expect += self.tf_ms
        return 0.0

    def _hole_schedule_s(self) -> list[float]:
        """Waits before each re-fetch of a candle missing while later ones exist: 0.25 s doubling
        (at most one timeframe), at least ``gap_refetches`` of them, adding up to ``gap_min_wait_s``.
        After the last one the candle is skipped as a gap."""
        waits: list[float] = []
        while len(waits) < self.gap_refetches or sum(waits) < self.gap_min_wait_s - 1e-9:
            wait = min(self.tf_ms / 1000.0, HOLE_FIRST_WAIT_S * 2.0 ** len(waits))
            if len(waits) >= self.gap_refetches:
                wait = min(wait, self.gap_min_wait_s - sum(waits))
            waits.append(max(self.min_wait_s, wait))
        return waits

    def _wait_until_close_s(self, server_now_ms: int) -> float:
        until_close_s = (self.next_ts_ms + self.tf_ms - server_now_ms) / 1000.0 + self.post_close_delay_s
        return min(self.poll_interval_s, max(self.min_wait_s, until_close_s))

    # ------------------------------------------------------------------ websocket mode
    def _next_from_stream(self) -> Bar | None:
        """Websocket mode: return a bar, or None after queueing REST candles / a timeout."""
        assert self.stream is not None
        if not self._stream_started:
            self.stream.start()
            self._stream_started = True
        now = time.monotonic()
        if not self._caught_up and now < self._rest_not_before:
            deadline = self._rest_not_before  # a missing candle is being waited out: listen meanwhile
        elif not self._caught_up:
            wait_s = self._refill(grace_ms=0)
            if self._pending:
                return None
            self._caught_up = not self._hole_seen  # REST has nothing more: from now on, listen
            deadline = time.monotonic() + min(wait_s, self.poll_interval_s if self._caught_up else wait_s)
        else:
            deadline = now + self.poll_interval_s
        while True:
            if self.stop_event.is_set():
                raise FeedStopped("stop requested")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            event = self.stream.get(min(remaining, 0.25))  # slices keep the stop event responsive
            if event is None:
                continue
            if event.kind == "fatal":
                raise event.error or FatalFeedError(event.detail)
            if event.kind == "disconnected":
                self.stats["ws_disconnects"] += 1
                self._caught_up = False  # candles closed meanwhile come only from REST
                return None
            bar = event.bar
            if event.kind != "closed" or bar is None:
                continue
            if bar.ts_ms < self.next_ts_ms:
                self.stats["duplicates"] += 1
                continue
            if bar.ts_ms == self.next_ts_ms:
                return self._emit(bar, CandleTiming(bar.ts_ms, "ws", time.time(), None))
            self._caught_up = False  # the socket skipped candles: back-fill over REST
            if time.monotonic() < self._rest_not_before:
                continue  # ... once the missing candle's back-off has passed
            return None
        if not self._caught_up:
            return None  # the back-off of a missing candle is over: REST again
        # Nothing on the socket for a while: make sure no candle is overdue (safety net).
        self._refill(grace_ms=self.ws_grace_ms)
        return None
