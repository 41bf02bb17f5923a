"""The exchange edge: the ONLY module that imports ccxt (and ccxt.pro).

What lives here (STYLE.md §8):

* :func:`make_exchange` builds a ccxt client for public market data. With
  ``exchange_url`` every API URL is rewritten onto that base (tests and
  benchmarks use the loopback exchange in ``testkit``) and checked to stay there.
* :func:`translate_ccxt_error` maps ccxt's exception tree onto the project's
  retryable vs fatal errors (``feeds/errors.py``).
* :class:`CcxtCandleClient` does single-attempt, validated candle calls; callers
  retry through ``feeds/retry.py``.
* :class:`CcxtKlineStream` runs ccxt.pro ``watch_ohlcv`` in a private asyncio
  loop on a background thread and reports candles closed on the socket.
* :func:`open_live_feed` wires those into :class:`feeds.live_candles.LiveCandleFeed`.

There is deliberately no function that places, edits or cancels an order.
API keys are read from the environment only (``<EXCHANGE>_API_KEY`` /
``<EXCHANGE>_API_SECRET``), never when ``exchange_url`` is given, and never logged.
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import queue
import threading
import time
from email.utils import parsedate_to_datetime
from typing import Any, Callable
from urllib.parse import urlsplit

import ccxt
import ccxt.pro

from domain.types import Bar
from feeds.candle_pages import closed_bars, rows_problem
from domain.times import timeframe_ms
from feeds.live_candles import LiveCandleFeed, StreamEvent
from feeds.errors import FatalFeedError, FeedError, RateLimitedError, RetryableFeedError
from feeds.retry import RetryPolicy
from domain.redact import mask_text, mask_url

__all__ = ["CcxtCandleClient", "CcxtKlineStream", "LiveCandleFeed", "make_exchange",
           "open_live_feed", "translate_ccxt_error"]

log = logging.getLogger("feeds.ccxt")

# Options that keep public-data sessions to the few endpoints we need (notes/ccxt-loopback.md):
# one exchangeInfo request for spot markets, no currency/margin discovery (which would call
# signed endpoints when keys are set), no clock-offset probing.
_BASE_OPTIONS: dict[str, Any] = {
    "fetchMarkets": {"types": ["spot"]},
    "fetchCurrencies": False,
    "fetchMargins": False,
    "adjustForTimeDifference": False,
    "defaultType": "spot",
}


# ---------------------------------------------------------------------- exchange construction
def make_exchange(exchange_id: str, exchange_url: str | None = None, timeout_ms: int = 10_000, *,
                  ws: bool = False, enable_rate_limit: bool | None = None) -> Any:
    """Build a ccxt client (``ws=True``: the async ccxt.pro one) for public market data.

    ``exchange_url`` (e.g. ``http://127.0.0.1:8123``) rewrites every URL in
    ``urls['api']``, nested websocket dicts included, to that base + the original
    path (a websocket URL also keeps its host's first label as a path prefix, so
    ``wss://stream.binance.com:9443/ws`` becomes ``ws://HOST:PORT/stream/ws``, which
    ccxt.pro's binance needs to recognise a spot stream). Every rewritten URL is then
    checked to be on that host; keys are never set in that case. The client-side
    rate limiter is on for real exchanges and off for ``exchange_url`` unless
    ``enable_rate_limit`` says otherwise. ``timeout_ms`` bounds each HTTP request.
    """
    namespace = ccxt.pro if ws else ccxt
    cls = getattr(namespace, exchange_id, None)
    if exchange_id not in ccxt.exchanges or cls is None:
        raise FatalFeedError(f"unknown exchange {exchange_id!r} (ccxt {ccxt.__version__}"
                             f"{' pro' if ws else ''} has no such exchange)")
    config: dict[str, Any] = {
        "timeout": int(timeout_ms),
        "enableRateLimit": exchange_url is None if enable_rate_limit is None else enable_rate_limit,
        "options": dict(_BASE_OPTIONS),
    }
    if exchange_url is None:
        key, secret = _api_keys_from_env(exchange_id)
        if key and secret:
            config["apiKey"], config["secret"] = key, secret
    ex = cls(config)
    ex.enableLastJsonResponse = True  # lets us spot a 200 response whose body was not JSON
    ex.enableLastResponseHeaders = True  # Retry-After on rate limits
    if not ws and getattr(ex, "session", None) is not None:
        ex.session.trust_env = False  # ignore HTTP(S)_PROXY: loopback must stay loopback
    if exchange_url is not None:
        base = _check_base_url(exchange_url)
        for key, value in ex.urls.items():  # 'api', and 'test'/'demo'/backup sets alike
            if isinstance(value, dict):
                _rewrite_urls(value, base)
                _assert_all_on(value, base)
        ex.apiKey, ex.secret = "", ""
    return ex


def _api_keys_from_env(exchange_id: str) -> tuple[str | None, str | None]:
    prefix = exchange_id.upper()
    return os.environ.get(f"{prefix}_API_KEY"), os.environ.get(f"{prefix}_API_SECRET")


def _check_base_url(exchange_url: str) -> str:
    parts = urlsplit(exchange_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise FatalFeedError(f"exchange_url must look like http://127.0.0.1:PORT, got {mask_url(exchange_url)!r}")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _rewrite_urls(api: dict[str, Any], base: str) -> None:
    ws_base = "ws" + base[4:] if base.startswith("http") else base
    for key, value in api.items():
        if isinstance(value, dict):
            _rewrite_urls(value, base)
        elif isinstance(value, str):
            parts = urlsplit(value)
            if parts.scheme in ("ws", "wss"):
                label = (parts.hostname or "").split(".")[0]
                api[key] = f"{ws_base}/{label}{parts.path}" if label else ws_base + parts.path
            else:
                api[key] = base + parts.path


def _assert_all_on(api: dict[str, Any], base: str) -> None:
    want = urlsplit(base)
    for value in api.values():
        if isinstance(value, dict):
            _assert_all_on(value, base)
        elif isinstance(value, str):
            got = urlsplit(value)
            if (got.hostname, got.port) != (want.hostname, want.port):
                raise RuntimeError(f"URL {mask_url(value)!r} escaped the rewrite to {mask_url(base)!r}")


# ---------------------------------------------------------------------- error translation
def translate_ccxt_error(exc: BaseException, what: str, ex: Any = None) -> FeedError:
    """Map a ccxt exception to the project's errors.

    ``OperationFailed`` and below (NetworkError, DDoSProtection, RateLimitExceeded,
    ExchangeNotAvailable, RequestTimeout, BadResponse) are retryable, rate limits as
    :class:`RateLimitedError`; ``ExchangeError`` and below (BadSymbol, BadRequest,
    AuthenticationError, NotSupported, ...) and anything else from ccxt are fatal.
    """
    name = type(exc).__name__
    detail = " ".join(mask_text(str(exc)).split())[:300]
    if isinstance(exc, (ccxt.RateLimitExceeded, ccxt.DDoSProtection)):
        return RateLimitedError(f"{what}: rate limited by the exchange ({name}: {detail})",
                                retry_after_s=_retry_after_s(ex))
    if isinstance(exc, ccxt.OperationFailed):
        return RetryableFeedError(f"{what}: {name}: {detail}")
    if isinstance(exc, ccxt.BadSymbol):
        return FatalFeedError(f"{what}: unknown or unsupported symbol ({name}: {detail})")
    if isinstance(exc, ccxt.AuthenticationError):
        return FatalFeedError(f"{what}: the exchange rejected the credentials ({name}: {detail}); "
                              "check the <EXCHANGE>_API_KEY/_API_SECRET environment variables")
    if isinstance(exc, ccxt.BadRequest):
        return FatalFeedError(f"{what}: the exchange rejected the request ({name}: {detail})")
    return FatalFeedError(f"{what}: {name}: {detail}")


def _retry_after_s(ex: Any) -> float | None:
    """The Retry-After header of the last response in seconds (delta-seconds or an HTTP date), or None."""
    headers = getattr(ex, "last_response_headers", None) or {}
    if not hasattr(headers, "items"):
        return None
    value = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        try:
            when = parsedate_to_datetime(str(value))
            seconds = when.timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


# ---------------------------------------------------------------------- REST candle client
class CcxtCandleClient:
    """Single-attempt, validated market-data calls on one synchronous ccxt client.

    Every method raises only :class:`RetryableFeedError` (incl. RateLimitedError) or
    :class:`FatalFeedError`; wrap calls in ``feeds.retry.call_with_retry``. Not
    thread-safe: use one client per thread.
    """

    def __init__(self, exchange: Any) -> None:
        self.exchange = exchange
        self.exchange_id: str = exchange.id

    @classmethod
    def connect(cls, exchange_id: str, exchange_url: str | None = None, timeout_ms: int = 10_000,
                **kwargs: Any) -> "CcxtCandleClient":
        return cls(make_exchange(exchange_id, exchange_url, timeout_ms, **kwargs))

    def close(self) -> None:
        try:
            self.exchange.close()
        except Exception:  # closing a requests session cannot matter to the caller
            pass

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ccxt.BaseError as exc:
            raise translate_ccxt_error(exc, f"{self.exchange_id} {what}", self.exchange) from exc
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            # ccxt parsing a body it did not expect (e.g. HTML with status 200)
            raise RetryableFeedError(f"{self.exchange_id} {what}: unparseable response "
                                     f"({type(exc).__name__}: {exc})") from exc

    def _require_json_body(self, what: str) -> None:
        if self.exchange.last_json_response is None:
            body = " ".join(str(self.exchange.last_http_response or "")[:120].split())
            raise RetryableFeedError(f"{self.exchange_id} {what}: bad response, body is not JSON: {body!r}")

    def load_markets(self) -> None:
        """Load the market list once; an empty list (a bad body) is retryable, not 'no symbol'."""
        if self.exchange.markets:
            return
        self._call("load_markets", lambda: self.exchange.load_markets(reload=True))
        if not self.exchange.markets:
            self.exchange.markets = None  # make ccxt load again next time
            raise RetryableFeedError(f"{self.exchange_id} load_markets: the exchange returned no "
                                     "markets (bad response?)")

    def check_symbol(self, symbol: str) -> None:
        """Raise FatalFeedError quickly when the exchange does not list ``symbol``."""
        self.load_markets()
        if symbol not in self.exchange.markets:
            close = [s for s in self.exchange.markets if s.split("/")[0] == symbol.split("/")[0]][:5]
            raise FatalFeedError(f"{self.exchange_id} has no market {symbol!r}"
                                 + (f" (did you mean one of {close}?)" if close else ""))

    def server_time_ms(self) -> int:
        """The exchange's clock (``fetch_time``), the only clock that decides if a candle closed."""
        ts = self._call("fetch_time", self.exchange.fetch_time)
        if isinstance(ts, bool) or not isinstance(ts, int) or ts <= 0:
            raise RetryableFeedError(f"{self.exchange_id} fetch_time: bad response ({ts!r})")
        return ts

    def fetch_raw_candles(self, symbol: str, timeframe: str, since_ms: int | None,
                          limit: int | None) -> list[list[Any]]:
        """``fetch_ohlcv`` rows, every one validated (in progress ones included)."""
        self.check_symbol(symbol)
        tf_ms = timeframe_ms(timeframe)
        what = f"fetch_ohlcv {symbol} {timeframe} since={since_ms}"
        rows = self._call(what, lambda: self.exchange.fetch_ohlcv(symbol, timeframe, since_ms, limit))
        self._require_json_body(what)
        if not isinstance(rows, list):
            raise RetryableFeedError(f"{self.exchange_id} {what}: bad response ({type(rows).__name__})")
        if not rows and _raw_row_count(self.exchange.last_json_response) > 0:
            raise RetryableFeedError(f"{self.exchange_id} {what}: bad response, the exchange sent rows "
                                     "but none could be parsed")
        problem = rows_problem(rows, tf_ms)
        if problem:
            raise RetryableFeedError(f"{self.exchange_id} {what}: bad candle in response: {problem}")
        return rows

    def fetch_closed_candles(self, symbol: str, timeframe: str, since_ms: int | None,
                             limit: int | None = 1000, *, server_time_ms: int | None = None) -> list[Bar]:
        """Closed candles with open time >= ``since_ms``: validated, sorted, de-duplicated.

        Closed means ``ts_ms + timeframe <= server time``. The server time is read
        BEFORE the candles (or passed in, read earlier): a candle closed at that
        instant was already final when the exchange answered the klines request,
        whereas a time read afterwards could declare closed a candle that the klines
        response still showed in progress.
        """
        now = self.server_time_ms() if server_time_ms is None else server_time_ms
        rows = self.fetch_raw_candles(symbol, timeframe, since_ms, limit)
        return closed_bars(rows, tf_ms=timeframe_ms(timeframe), since_ms=since_ms, server_time_ms=now)


def _raw_row_count(body: Any) -> int:
    """Rows in a kline response body: binance sends a list, bybit {"result": {"list": [...]}}."""
    if isinstance(body, list):
        return len(body)
    if isinstance(body, dict):
        result = body.get("result")
        if isinstance(result, dict) and isinstance(result.get("list"), list):
            return len(result["list"])
    return 0


# ---------------------------------------------------------------------- websocket stream
class CcxtKlineStream:
    """ccxt.pro ``watch_ohlcv`` on a background thread with its own asyncio loop.

    Emits :class:`StreamEvent` into a queue: ``closed`` (a candle closed on the
    socket: the next candle of the same connection arrived), ``disconnected`` (the
    socket dropped, errored, or stayed quiet for ``stale_timeout_s``; it reconnects
    by itself after a back-off from ``retry_policy``) and ``fatal``. Candles closed
    while disconnected are never replayed by the exchange: the consumer catches up
    over REST on ``disconnected``.
    """

    def __init__(self, exchange_id: str, symbol: str, timeframe: str, *,
                 exchange_url: str | None = None, timeout_ms: int = 10_000,
                 stale_timeout_s: float = 30.0, retry_policy: RetryPolicy | None = None) -> None:
        self.exchange_id, self.symbol, self.timeframe = exchange_id, symbol, timeframe
        self.tf_ms = timeframe_ms(timeframe)
        self.exchange_url, self.timeout_ms = exchange_url, timeout_ms
        self.stale_timeout_s = stale_timeout_s
        self.retry_policy = retry_policy or RetryPolicy(base_delay_s=0.5, max_delay_s=30.0,
                                                        max_attempts=None)
        self._events: queue.Queue[StreamEvent] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.connections = 0  # successful subscriptions, for tests and logs

    def start(self) -> None:
        if self._thread is not None:
            return
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            self._task = loop.create_task(self._run())
            ready.set()
            try:
                loop.run_until_complete(self._task)
            except asyncio.CancelledError:
                pass
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=f"ws-{self.exchange_id}-{self.symbol}",
                                        daemon=True)
        self._thread.start()
        ready.wait(5)

    def get(self, timeout_s: float) -> StreamEvent | None:
        try:
            return self._events.get(timeout=max(0.0, timeout_s))
        except queue.Empty:
            return None

    def close(self) -> None:
        self._closing = True
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:
                pass  # loop already closed
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            ex = None
            try:
                ex = make_exchange(self.exchange_id, self.exchange_url, self.timeout_ms, ws=True)
                ex.newUpdates = False  # each watch returns the (small) cache, latest values per candle
                ex.options["OHLCVLimit"] = 8
                async for event in self._watch(ex):
                    failures = 0
                    self._events.put(event)
            except asyncio.CancelledError:
                raise
            except ccxt.BaseError as exc:
                err = translate_ccxt_error(exc, f"{self.exchange_id} watch_ohlcv {self.symbol}")
                if isinstance(err, FatalFeedError):
                    self._events.put(StreamEvent("fatal", error=err))
                    return
                failures += 1
                self._events.put(StreamEvent("disconnected", detail=str(err)))
                delay = self.retry_policy.delay_s(failures, err)
                log.warning("websocket %s %s: %s; reconnecting in %.2fs", self.exchange_id,
                            self.symbol, err, delay)
                await asyncio.sleep(delay)
            except _QuietSocket as exc:
                self._events.put(StreamEvent("disconnected", detail=str(exc)))
                log.warning("websocket %s %s: %s; reconnecting", self.exchange_id, self.symbol, exc)
            except Exception as exc:  # aiohttp/socket errors ccxt.pro lets through: reconnect too
                failures += 1
                self._events.put(StreamEvent("disconnected", detail=f"{type(exc).__name__}: {exc}"))
                delay = self.retry_policy.delay_s(failures, None)
                log.warning("websocket %s %s: %s: %s; reconnecting in %.2fs", self.exchange_id,
                            self.symbol, type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
            finally:
                if ex is not None:
                    ex.timeout_on_exit = 0
                    try:
                        await ex.close()
                    except Exception:  # best effort: the socket may already be gone
                        pass

    async def _watch(self, ex: Any):  # type: ignore[no-untyped-def]
        """Yield ``closed`` events for one connection until it fails or goes quiet."""
        current: list[Any] | None = None  # newest candle seen on THIS connection
        subscribed = False
        while not self._closing:
            try:
                rows = await asyncio.wait_for(ex.watch_ohlcv(self.symbol, self.timeframe),
                                              self.stale_timeout_s)
            except asyncio.TimeoutError:
                raise _QuietSocket(f"no candle update for {self.stale_timeout_s}s") from None
            if not subscribed:
                subscribed = True
                self.connections += 1
            by_ts = {int(r[0]): r for r in rows if r and r[0] is not None}
            if not by_ts:
                continue
            newest = max(by_ts)
            if current is not None and newest > int(current[0]):
                prev_ts = int(current[0])
                if newest == prev_ts + self.tf_ms:
                    final = by_ts.get(prev_ts, current)
                    problem = rows_problem([final], self.tf_ms)
                    if problem is None:
                        yield StreamEvent("closed", bar=Bar(prev_ts, *(float(x) for x in final[1:6])))
                    else:
                        log.warning("websocket sent a bad candle (%s); REST will supply it", problem)
                # a jump of more than one candle: the consumer notices the hole and asks REST
            if current is None or newest >= int(current[0]):
                current = list(by_ts[newest])


class _QuietSocket(Exception):
    """The socket is open but nothing arrived for the staleness timeout."""


# ---------------------------------------------------------------------- factory
def open_live_feed(exchange_id: str, symbol: str, timeframe: str, since_ms: int, *,
                   exchange_url: str | None = None, timeout_ms: int = 10_000, ws: bool = False,
                   ws_stale_timeout_s: float = 30.0, stop_event: threading.Event | None = None,
                   client: CcxtCandleClient | None = None, **feed_kwargs: Any) -> LiveCandleFeed:
    """A :class:`LiveCandleFeed` on ``exchange_id`` (REST polling, plus the websocket if ``ws``).

    Extra keyword arguments go to :class:`LiveCandleFeed` (poll_interval_s,
    retry_policy, gap_refetches, ...). ``client``: an already connected REST client to
    reuse (e.g. one that checked the symbol and read the server clock first). Either
    way the feed owns the client: ``feed.close()`` closes it.
    """
    if client is None:
        client = CcxtCandleClient.connect(exchange_id, exchange_url, timeout_ms)
    stream = None
    if ws:
        stream = CcxtKlineStream(exchange_id, symbol, timeframe, exchange_url=exchange_url,
                                 timeout_ms=timeout_ms, stale_timeout_s=ws_stale_timeout_s,
                                 retry_policy=feed_kwargs.get("retry_policy"))
    return LiveCandleFeed(client, symbol, timeframe, since_ms, stop_event=stop_event, stream=stream,
                          owns_client=True, **feed_kwargs)
