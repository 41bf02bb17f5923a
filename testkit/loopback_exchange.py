"""The project's own exchange server for tests and benchmarks (loopback only).

It replays given candles on an accelerated clock and speaks enough of binance's
spot REST + kline websocket and bybit's v5 REST for the *real, unmodified* ccxt
client to work against it.

Clock: ``server time = start_at_ms + elapsed_real_s * 1000 * speed``. A candle
exists once its open time <= server time; the newest one is *in progress* and
is served with PARTIAL values (close moves linearly from open to the final close,
high/low = max/min(open, partial close), volume scales with elapsed fraction), so
a client that uses an unclosed candle gets numbers that differ from the file.

Faults (thread-safe, ``server.inject(kind, count=1, duration_s=None, ...)``):

==================  ==========================================================
``http_500``        HTTP 500 with an HTML body (ccxt: ExchangeNotAvailable)
``http_503``        HTTP 503, HTML body (ExchangeNotAvailable)
``http_418``        HTTP 418 IP ban, Retry-After header (DDoSProtection)
``http_429``        HTTP 429 too many requests, Retry-After (DDoSProtection/RateLimitExceeded)
``timeout``         stall ``stall_s`` (default 3 s) before answering (RequestTimeout)
``bad_json``        HTTP 200 with the real body truncated in the middle
``refuse``          close the listening socket and every open connection for
                    ``duration_s`` seconds, then listen again on the same port
``missing_candle``  candle ``ts_ms`` (default: the one in progress now, i.e. the
                    next to close) is left out of ``count`` kline responses that
                    would contain it (or until ``duration_s`` has passed)
``duplicate_candle`` ``count`` kline responses repeat one closed candle
``ws_quiet``        open websockets stop pushing (socket stays open) for
                    ``duration_s`` (None: for good)
``ws_drop``         close every open websocket
==================  ==========================================================

HTTP faults apply to any REST path unless ``path`` (a substring, e.g. ``"klines"``)
narrows them. Each served request is logged (``server.requests``) with path,
params, headers, peer address and any fault applied, so tests can assert that no
request carried API keys and that every peer was 127.0.0.1.

CLI::

    python -m testkit.loopback_exchange --data FILE.csv[.gz] --timeframe 1m --speed 60 \
        [--start-at TS_ms|INDEX|ISO-date] [--port N] [--fault-schedule "30:http_500:2,60:refuse:5"]

prints ``listening on http://127.0.0.1:PORT`` and serves until SIGINT/SIGTERM.
"""
from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import logging
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Sequence

from aiohttp import WSMsgType, web

from domain.types import Bar
from domain.times import is_aligned, timeframe_ms

log = logging.getLogger("testkit.loopback_exchange")

LOOPBACK = "127.0.0.1"
FAULT_KINDS = ("http_500", "http_503", "http_418", "http_429", "timeout", "bad_json", "refuse",
               "missing_candle", "duplicate_candle", "ws_quiet", "ws_drop")
_HTTP_FAULTS = ("http_500", "http_503", "http_418", "http_429", "timeout", "bad_json")
_BYBIT_INTERVALS = {60_000: "1", 180_000: "3", 300_000: "5", 900_000: "15", 1_800_000: "30",
                    3_600_000: "60", 7_200_000: "120", 14_400_000: "240", 21_600_000: "360",
                    43_200_000: "720", 86_400_000: "D", 604_800_000: "W"}
_HTML_ERROR = "<html><head><title>{code}</title></head><body><h1>{code} {text}</h1></body></html>"


@dataclass
class _Fault:
    kind: str
    remaining: int | None  # None: unlimited until `until`
    until: float | None  # time.monotonic() deadline, or None
    path: str | None = None
    ts_ms: int | None = None
    stall_s: float | None = None
    skip: int = 0  # let this many matching requests through first
    retry_after: str | None = None  # Retry-After header of an http_418/http_429 (default "1")

    def active(self, now: float) -> bool:
        if self.until is not None and now >= self.until:
            return False
        return self.remaining is None or self.remaining > 0


@dataclass(eq=False)
class _WsConn:
    ws: web.WebSocketResponse
    streams: set[str] = field(default_factory=set)
    quiet_until: float | None = None  # monotonic; math.inf = quiet for good
    last_final_idx: dict[str, int] = field(default_factory=dict)


def _num(x: float) -> str:
    """Shortest text that parses back to exactly ``x`` (exchanges send prices as strings)."""
    return repr(float(x))


class LoopbackExchange:
    """A fake binance/bybit on 127.0.0.1, running in a background thread.

    ``bars`` must be sorted and aligned to ``timeframe``; gaps are allowed (they are
    candles the exchange "does not have"). ``start_at_ms`` (default: the first
    candle's open) is the server time at :meth:`start`; ``speed`` server-seconds
    pass per real second (0 freezes the clock).
    """

    def __init__(self, bars: Sequence[Bar], timeframe: str = "1m", *, speed: float = 60.0,
                 start_at_ms: int | None = None, symbol: str = "BTC/USDT", port: int = 0,
                 host: str = LOOPBACK, ws_push_interval_s: float = 0.25, stall_s: float = 3.0,
                 exchanges: Sequence[str] = ("binance", "bybit")) -> None:
        if host != LOOPBACK:
            raise ValueError(f"the loopback exchange only binds {LOOPBACK}, not {host!r}")
        if not bars:
            raise ValueError("the loopback exchange needs at least one candle")
        self.tf_ms = timeframe_ms(timeframe)
        self.timeframe = timeframe
        for a, b in zip(bars, bars[1:]):
            if b.ts_ms <= a.ts_ms:
                raise ValueError(f"bars not strictly increasing at {b.ts_ms}")
        bad = [b.ts_ms for b in bars if not is_aligned(b.ts_ms, self.tf_ms)]
        if bad:
            raise ValueError(f"{len(bad)} bars not aligned to {timeframe}, first at {bad[0]}")
        self.bars = list(bars)
        self._ts = [b.ts_ms for b in self.bars]
        base, quote = symbol.split("/")
        self.symbol, self.base, self.quote = symbol, base, quote
        self.market_id = base + quote
        self.exchanges = tuple(exchanges)
        self.ws_push_interval_s = ws_push_interval_s
        self.default_stall_s = stall_s
        self._port = port
        self._lock = threading.RLock()
        self._speed = float(speed)
        self._anchor_ms = float(self.bars[0].ts_ms if start_at_ms is None else start_at_ms)
        self._anchor_mono = time.monotonic()
        self._faults: list[_Fault] = []
        self.fault_hits: dict[str, int] = {}  # kind -> times a fault actually fired
        self._requests: list[dict[str, Any]] = []
        self._ws_conns: set[_WsConn] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._listening = threading.Event()
        self._refuse_until = 0.0  # loop.time() when a `refuse` outage ends

    # ------------------------------------------------------------------ clock
    def server_time_ms(self) -> int:
        with self._lock:
            return int(self._anchor_ms + (time.monotonic() - self._anchor_mono) * 1000.0 * self._speed)

    def set_time(self, server_time_ms: int) -> None:
        """Jump the server clock (it keeps running at the current speed from there)."""
        with self._lock:
            self._anchor_ms, self._anchor_mono = float(server_time_ms), time.monotonic()

    def set_speed(self, speed: float) -> None:
        """Change the clock speed from now on (0 freezes it)."""
        now = self.server_time_ms()
        with self._lock:
            self._anchor_ms, self._anchor_mono, self._speed = float(now), time.monotonic(), float(speed)

    def closed_bars(self, at_ms: int | None = None) -> list[Bar]:
        """The candles closed at server time ``at_ms`` (default now): what a client may see final."""
        now = self.server_time_ms() if at_ms is None else at_ms
        end = bisect.bisect_right(self._ts, now - self.tf_ms)
        return self.bars[:end]

    # ------------------------------------------------------------------ faults + log
    def inject(self, kind: str, count: int | None = 1, *, duration_s: float | None = None,
               path: str | None = None, ts_ms: int | None = None, stall_s: float | None = None,
               skip: int = 0, retry_after: str | None = None) -> None:
        """Schedule a fault (see the module docstring). ``count=None`` with ``duration_s``:
        every matching request until the deadline. ``skip``: let that many matching
        requests through unharmed first (e.g. fail the 2nd page of a download). ``retry_after``:
        the Retry-After header value sent with http_418/http_429 (default "1")."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
        now = time.monotonic()
        with self._lock:
            if kind in ("refuse", "ws_drop", "ws_quiet"):
                self.fault_hits[kind] = self.fault_hits.get(kind, 0) + 1
        if kind == "refuse":
            self._call_in_loop(self._refuse(2.0 if duration_s is None else duration_s))
            return
        if kind == "ws_drop":
            self._call_in_loop(self._drop_websockets())
            return
        if kind == "ws_quiet":
            until = math.inf if duration_s is None else now + duration_s
            with self._lock:
                for conn in self._ws_conns:
                    conn.quiet_until = until
            return
        if kind == "missing_candle" and ts_ms is None:
            now_ms = self.server_time_ms()
            ts_ms = self._current_open(now_ms)
        fault = _Fault(kind, count, None if duration_s is None else now + duration_s, path, ts_ms,
                       stall_s, skip, retry_after)
        if fault.remaining is None and fault.until is None:
            raise ValueError("give a count or a duration_s")
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            for conn in self._ws_conns:
                conn.quiet_until = None

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A copy of the request log: dicts with time, server_time_ms, method, path, params,
        headers, remote, fault."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def _take_fault(self, kinds: Sequence[str], path: str) -> _Fault | None:
        now = time.monotonic()
        with self._lock:
            self._faults = [f for f in self._faults if f.active(now)]
            for f in self._faults:
                if f.kind in kinds and (f.path is None or f.path in path):
                    if f.skip > 0:
                        f.skip -= 1
                        continue
                    if f.remaining is not None:
                        f.remaining -= 1
                    self.fault_hits[f.kind] = self.fault_hits.get(f.kind, 0) + 1
                    return f
        return None

    def _missing_ts(self, visible_ts: set[int]) -> set[int]:
        """Candles to leave out of this kline response (consumes the faults that apply)."""
        now = time.monotonic()
        out: set[int] = set()
        with self._lock:
            for f in self._faults:
                if f.kind == "missing_candle" and f.active(now) and f.ts_ms in visible_ts:
                    if f.skip > 0:
                        f.skip -= 1
                        continue
                    out.add(f.ts_ms)  # type: ignore[arg-type]
                    self.fault_hits[f.kind] = self.fault_hits.get(f.kind, 0) + 1
                    if f.remaining is not None:
                        f.remaining -= 1
        return out

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._port}"

    def start(self) -> "LoopbackExchange":
        if self._thread is not None:
            raise RuntimeError("already started")
        ready: list[BaseException | None] = []
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._setup())
                ready.append(None)
            except BaseException as exc:  # report bind errors to the caller
                ready.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._teardown())
                pending = asyncio.all_tasks(loop)  # e.g. a handler stalled by a `timeout` fault
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.close()

        with self._lock:  # restart the clock at the requested start time
            self._anchor_mono = time.monotonic()
        self._thread = threading.Thread(target=run, name="loopback-exchange", daemon=True)
        self._thread.start()
        started.wait(10)
        if not ready or ready[0] is not None:
            self._thread = None
            raise RuntimeError(f"loopback exchange failed to start: {ready[0] if ready else 'timeout'}")
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> "LoopbackExchange":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call_in_loop(self, coro: Any) -> None:
        if self._loop is None:
            coro.close()
            raise RuntimeError("server not started")
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        fut.result(10)

    async def _setup(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        if "binance" in self.exchanges:
            r.add_get("/api/v3/ping", self._b_ping)
            r.add_get("/api/v3/time", self._b_time)
            r.add_get("/api/v3/exchangeInfo", self._b_exchange_info)
            r.add_get("/api/v3/ticker/24hr", self._b_ticker)
            r.add_get("/api/v3/klines", self._b_klines)
            for p in ("/stream/ws", "/stream/ws/{tail:.*}", "/ws", "/ws/{tail:.*}", "/stream"):
                r.add_get(p, self._ws_handler)
        if "bybit" in self.exchanges:
            r.add_get("/v5/market/time", self._y_time)
            r.add_get("/v5/market/instruments-info", self._y_instruments)
            r.add_get("/v5/market/kline", self._y_klines)
            r.add_get("/v5/market/tickers", self._y_tickers)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, LOOPBACK, self._port, reuse_address=True)
        await self._site.start()
        self._port = self._site.port
        self._listening.set()

    async def _teardown(self) -> None:
        await self._drop_websockets()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _drop_websockets(self) -> None:
        with self._lock:
            conns = list(self._ws_conns)
        for conn in conns:
            await conn.ws.close(code=1001, message=b"going away")

    async def _refuse(self, duration_s: float) -> None:
        """Close the listener and all connections now; listen again after ``duration_s``
        (a second refuse during an outage just extends it)."""
        assert self._runner is not None
        loop = asyncio.get_running_loop()
        self._refuse_until = max(self._refuse_until, loop.time() + duration_s)
        if self._site is None:
            return  # already refusing: the pending reopen waits for the new deadline
        await self._site.stop()
        self._site = None
        self._listening.clear()
        for handler in self._runner.server.connections if self._runner.server else []:
            handler.force_close()

        async def reopen() -> None:
            while loop.time() < self._refuse_until:
                await asyncio.sleep(self._refuse_until - loop.time())
            assert self._runner is not None
            site = web.TCPSite(self._runner, LOOPBACK, self._port, reuse_address=True)
            for _ in range(50):
                try:
                    await site.start()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            self._site = site
            self._listening.set()

        loop.create_task(reopen())

    def wait_listening(self, timeout_s: float = 10.0) -> bool:
        """Block until the server accepts connections again (after a ``refuse`` fault)."""
        return self._listening.wait(timeout_s)

    # ------------------------------------------------------------------ HTTP plumbing
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        entry = {"time": time.time(), "server_time_ms": self.server_time_ms(),
                 "method": request.method, "path": request.path,
                 "params": dict(request.query), "headers": dict(request.headers),
                 "remote": request.remote, "fault": None}
        with self._lock:
            self._requests.append(entry)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await handler(request)
        fault = self._take_fault(_HTTP_FAULTS, request.path)
        if fault is not None:
            entry["fault"] = fault.kind
            if fault.kind == "timeout":
                await asyncio.sleep(fault.stall_s if fault.stall_s is not None else self.default_stall_s)
            elif fault.kind == "bad_json":
                resp = await handler(request)
                body = resp.text or ""  # type: ignore[attr-defined]
                return web.Response(status=200, text=body[: max(1, len(body) // 2)],
                                    content_type="application/json")
            else:
                code = int(fault.kind.split("_")[1])
                text = {500: "Internal Server Error", 503: "Service Unavailable",
                        418: "I'm a teapot", 429: "Too Many Requests"}[code]
                headers = {"Retry-After": fault.retry_after or "1"} if code in (418, 429) else {}
                return web.Response(status=code, text=_HTML_ERROR.format(code=code, text=text),
                                    content_type="text/html", headers=headers)
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status == 404:
                return web.Response(status=404, text=_HTML_ERROR.format(code=404, text="Not Found"),
                                    content_type="text/html")
            raise

    # ------------------------------------------------------------------ candles
    def _current_open(self, now_ms: int) -> int:
        i = bisect.bisect_right(self._ts, now_ms) - 1
        return self._ts[i] if i >= 0 else self._ts[0]

    def _row_values(self, i: int, now_ms: int) -> tuple[float, float, float, float, float, bool]:
        """(o, h, l, c, v, closed) of candle ``i`` as seen at ``now_ms`` (partial if in progress)."""
        b = self.bars[i]
        if now_ms >= b.ts_ms + self.tf_ms:
            return b.open, b.high, b.low, b.close, b.volume, True
        frac = max(0.0, (now_ms - b.ts_ms) / self.tf_ms)
        c = round(b.open + frac * (b.close - b.open), 8)
        return b.open, max(b.open, c), min(b.open, c), c, round(frac * b.volume, 8), False

    def _select(self, now_ms: int, start: int | None, end: int | None, limit: int) -> list[int]:
        """Indices of candles with open <= now, in [start, end], first `limit` after start or
        last `limit` before end/now."""
        hi = bisect.bisect_right(self._ts, now_ms if end is None else min(end, now_ms))
        if start is not None:
            lo = bisect.bisect_left(self._ts, start)
            return list(range(lo, min(hi, lo + limit)))
        return list(range(max(0, hi - limit), hi))

    def _kline_indices(self, now_ms: int, start: int | None, end: int | None, limit: int) -> list[int]:
        idx = self._select(now_ms, start, end, limit)
        missing = self._missing_ts({self._ts[i] for i in idx})
        idx = [i for i in idx if self._ts[i] not in missing]
        if idx and self._take_fault(("duplicate_candle",), "klines"):
            closed = [k for k, i in enumerate(idx) if now_ms >= self._ts[i] + self.tf_ms]
            if closed:
                k = closed[len(closed) // 2]
                idx.insert(k + 1, idx[k])
        return idx

    # ------------------------------------------------------------------ binance REST
    @staticmethod
    def _b_error(code: int, msg: str, status: int = 400) -> web.Response:
        return web.json_response({"code": code, "msg": msg}, status=status)

    async def _b_ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _b_time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": self.server_time_ms()})

    def _b_symbol_info(self) -> dict[str, Any]:
        return {
            "symbol": self.market_id, "status": "TRADING", "baseAsset": self.base,
            "baseAssetPrecision": 8, "quoteAsset": self.quote, "quotePrecision": 8,
            "quoteAssetPrecision": 8, "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True, "ocoAllowed": True, "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True, "cancelReplaceAllowed": True, "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000",
                 "tickSize": "0.01000000"},
                {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000",
                 "stepSize": "0.00001000"},
                {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "100.00000000",
                 "stepSize": "0.00000000"},
                {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
                 "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
                {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            ],
            "permissions": [], "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }

    async def _b_exchange_info(self, request: web.Request) -> web.Response:
        sym = request.query.get("symbol")
        if sym is not None and sym != self.market_id:
            return self._b_error(-1121, "Invalid symbol.")
        return web.json_response({
            "timezone": "UTC", "serverTime": self.server_time_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            ],
            "exchangeFilters": [], "symbols": [self._b_symbol_info()],
        })

    async def _b_ticker(self, request: web.Request) -> web.Response:
        sym = request.query.get("symbol")
        if sym is not None and sym != self.market_id:
            return self._b_error(-1121, "Invalid symbol.")
        now = self.server_time_ms()
        idx = self._select(now, None, None, max(1, 86_400_000 // self.tf_ms))
        if not idx:
            return self._b_error(-1121, "Invalid symbol.")
        o = self.bars[idx[0]].open
        vals = [self._row_values(i, now) for i in idx]
        last = vals[-1][3]
        body = {"symbol": self.market_id, "priceChange": _num(last - o),
                "priceChangePercent": _num(round((last / o - 1) * 100, 3)),
                "weightedAvgPrice": _num(last), "prevClosePrice": _num(o), "lastPrice": _num(last),
                "lastQty": "0.001", "bidPrice": _num(last), "bidQty": "1.0", "askPrice": _num(last),
                "askQty": "1.0", "openPrice": _num(o), "highPrice": _num(max(v[1] for v in vals)),
                "lowPrice": _num(min(v[2] for v in vals)), "volume": _num(sum(v[4] for v in vals)),
                "quoteVolume": _num(sum(v[4] * v[3] for v in vals)), "openTime": now - 86_400_000,
                "closeTime": now, "firstId": 1, "lastId": 2, "count": 2}
        if sym is None:
            return web.json_response([body])
        return web.json_response(body)

    async def _b_klines(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("symbol") != self.market_id:
            return self._b_error(-1121, "Invalid symbol.")
        if q.get("interval") != self.timeframe:
            return self._b_error(-1120, "Invalid interval.")
        try:
            limit = int(q.get("limit", "500"))
            start = int(q["startTime"]) if "startTime" in q else None
            end = int(q["endTime"]) if "endTime" in q else None
        except ValueError:
            return self._b_error(-1100, "Illegal characters found in a parameter.")
        if limit <= 0:
            return self._b_error(-1130, "Invalid data sent for a parameter.")
        limit = min(limit, 1000)
        now = self.server_time_ms()
        rows = []
        for i in self._kline_indices(now, start, end, limit):
            o, h, low, c, v, _ = self._row_values(i, now)
            t = self._ts[i]
            rows.append([t, _num(o), _num(h), _num(low), _num(c), _num(v), t + self.tf_ms - 1,
                         _num(round(v * c, 8)), 100, _num(round(v / 2, 8)),
                         _num(round(v * c / 2, 8)), "0"])
        return web.json_response(rows)

    # ------------------------------------------------------------------ bybit REST
    @staticmethod
    def _y_ok(result: Any, now_ms: int) -> web.Response:
        return web.json_response({"retCode": 0, "retMsg": "OK", "result": result,
                                  "retExtInfo": {}, "time": now_ms})

    @staticmethod
    def _y_error(code: int, msg: str, now_ms: int) -> web.Response:
        return web.json_response({"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {},
                                  "time": now_ms})

    async def _y_time(self, request: web.Request) -> web.Response:
        now = self.server_time_ms()
        return self._y_ok({"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)}, now)

    async def _y_instruments(self, request: web.Request) -> web.Response:
        now = self.server_time_ms()
        category = request.query.get("category", "spot")
        items = []
        if category == "spot":
            items.append({
                "symbol": self.market_id, "baseCoin": self.base, "quoteCoin": self.quote,
                "innovation": "0", "status": "Trading", "marginTrading": "none",
                "lotSizeFilter": {"basePrecision": "0.000001", "quotePrecision": "0.00000001",
                                  "minOrderQty": "0.000048", "maxOrderQty": "71.73956243",
                                  "minOrderAmt": "1", "maxOrderAmt": "2000000"},
                "priceFilter": {"tickSize": "0.01"},
            })
        return self._y_ok({"category": category, "list": items, "nextPageCursor": ""}, now)

    async def _y_tickers(self, request: web.Request) -> web.Response:
        now = self.server_time_ms()
        if request.query.get("symbol", self.market_id) != self.market_id:
            return self._y_error(10001, "params error: symbol invalid", now)
        idx = self._select(now, None, None, 1)
        last = self._row_values(idx[-1], now)[3] if idx else self.bars[0].open
        return self._y_ok({"category": "spot", "list": [{
            "symbol": self.market_id, "lastPrice": _num(last), "bid1Price": _num(last),
            "ask1Price": _num(last), "bid1Size": "1", "ask1Size": "1", "prevPrice24h": _num(last),
            "price24hPcnt": "0", "highPrice24h": _num(last), "lowPrice24h": _num(last),
            "turnover24h": "0", "volume24h": "0"}]}, now)

    async def _y_klines(self, request: web.Request) -> web.Response:
        q = request.query
        now = self.server_time_ms()
        if q.get("symbol") != self.market_id or q.get("category", "spot") != "spot":
            return self._y_error(10001, "params error: symbol invalid", now)
        if q.get("interval") != _BYBIT_INTERVALS.get(self.tf_ms):
            return self._y_error(10001, "params error: interval invalid", now)
        try:
            limit = min(1000, int(q.get("limit", "200")))
            start = int(q["start"]) if "start" in q else None
            end = int(q["end"]) if "end" in q else None
        except ValueError:
            return self._y_error(10001, "params error", now)
        rows = []
        for i in self._kline_indices(now, start, end, max(1, limit)):
            o, h, low, c, v, _ = self._row_values(i, now)
            rows.append([str(self._ts[i]), _num(o), _num(h), _num(low), _num(c), _num(v),
                         _num(round(v * c, 8))])
        rows.reverse()  # bybit: newest first
        return self._y_ok({"symbol": self.market_id, "category": "spot", "list": rows}, now)

    # ------------------------------------------------------------------ binance websocket
    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _WsConn(ws)
        for part in request.match_info.get("tail", "").split("/"):
            if "@kline_" in part:
                conn.streams.add(part)
        with self._lock:
            self._ws_conns.add(conn)
        pusher = asyncio.get_running_loop().create_task(self._ws_push_loop(conn))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    await ws.send_json({"error": {"code": 3, "msg": "Invalid JSON"}})
                    continue
                entry = {"time": time.time(), "server_time_ms": self.server_time_ms(),
                         "method": "WS", "path": request.path, "params": data,
                         "headers": {}, "remote": request.remote, "fault": None}
                with self._lock:
                    self._requests.append(entry)
                method, params = data.get("method"), data.get("params") or []
                if method == "SUBSCRIBE":
                    conn.streams.update(str(p) for p in params)
                    await ws.send_json({"result": None, "id": data.get("id")})
                elif method == "UNSUBSCRIBE":
                    conn.streams.difference_update(str(p) for p in params)
                    await ws.send_json({"result": None, "id": data.get("id")})
                elif method == "LIST_SUBSCRIPTIONS":
                    await ws.send_json({"result": sorted(conn.streams), "id": data.get("id")})
                else:
                    await ws.send_json({"error": {"code": 2, "msg": f"Invalid request: {method}"},
                                        "id": data.get("id")})
        finally:
            pusher.cancel()
            with self._lock:
                self._ws_conns.discard(conn)
        return ws

    def _kline_event(self, i: int, now_ms: int) -> dict[str, Any]:
        o, h, low, c, v, closed = self._row_values(i, now_ms)
        t = self._ts[i]
        return {"e": "kline", "E": now_ms, "s": self.market_id, "k": {
            "t": t, "T": t + self.tf_ms - 1, "s": self.market_id, "i": self.timeframe,
            "f": 100, "L": 200, "o": _num(o), "c": _num(c), "h": _num(h), "l": _num(low),
            "v": _num(v), "n": 100, "x": closed, "q": _num(round(v * c, 8)), "V": "0", "Q": "0",
            "B": "0"}}

    async def _ws_push_loop(self, conn: _WsConn) -> None:
        wanted = f"{self.market_id.lower()}@kline_{self.timeframe}"
        while not conn.ws.closed:
            await asyncio.sleep(self.ws_push_interval_s)
            if conn.quiet_until is not None and time.monotonic() < conn.quiet_until:
                continue
            if wanted not in conn.streams:
                continue
            now = self.server_time_ms()
            cur = bisect.bisect_right(self._ts, now) - 1
            if cur < 0:
                continue
            last_final = conn.last_final_idx.setdefault(wanted, cur - 1)
            try:
                for j in range(last_final + 1, cur + 1):  # finals (x: true) of candles just closed
                    if now >= self._ts[j] + self.tf_ms:
                        await conn.ws.send_json(self._kline_event(j, now))
                        conn.last_final_idx[wanted] = j
                if now < self._ts[cur] + self.tf_ms:  # the candle in progress (x: false)
                    await conn.ws.send_json(self._kline_event(cur, now))
            except (ConnectionError, RuntimeError):
                return


# ---------------------------------------------------------------------- CLI
def _parse_start_at(value: str, bars: Sequence[Bar]) -> int:
    if "-" in value[1:] or "T" in value:
        dt = datetime.fromisoformat(value)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return int(dt.timestamp() * 1000)
    n = int(value)
    if 0 <= n < len(bars):
        return bars[n].ts_ms
    if -len(bars) <= n < 0:
        return bars[n].ts_ms
    return n


def _parse_schedule(text: str) -> list[tuple[float, str, float | None]]:
    """``"AT_S:KIND[:N]"`` comma-separated; N is a count, or seconds for refuse/ws_quiet."""
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        parts = item.split(":")
        if len(parts) not in (2, 3) or parts[1] not in FAULT_KINDS:
            raise argparse.ArgumentTypeError(f"bad fault {item!r}: use AT_S:KIND[:N], KIND in {FAULT_KINDS}")
        out.append((float(parts[0]), parts[1], float(parts[2]) if len(parts) == 3 else None))
    return sorted(out)


def main(argv: Sequence[str] | None = None) -> int:
    from testkit.candles import read_candles_csv

    ap = argparse.ArgumentParser(prog="python -m testkit.loopback_exchange",
                                 description="Replay candles as a fake binance/bybit on 127.0.0.1.")
    ap.add_argument("--data", required=True, help="candle CSV(.gz): timestamp,open,high,low,close,volume")
    ap.add_argument("--timeframe", default="1m")
    ap.add_argument("--speed", type=float, default=60.0, help="server seconds per real second")
    ap.add_argument("--start-at", default=None, help="candle index, open time in ms, or ISO date")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--symbol", default="BTC/USDT")
    ap.add_argument("--exchange", choices=("binance", "bybit", "all"), default="all")
    ap.add_argument("--ws-push-interval", type=float, default=0.25, help="seconds between ws pushes")
    ap.add_argument("--fault-schedule", type=_parse_schedule, default=[],
                    help='e.g. "30:http_500:2,60:refuse:5,90:ws_quiet:20" (seconds after start)')
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    bars = read_candles_csv(args.data)
    start_at = None if args.start_at is None else _parse_start_at(args.start_at, bars)
    exchanges = ("binance", "bybit") if args.exchange == "all" else (args.exchange,)
    server = LoopbackExchange(bars, args.timeframe, speed=args.speed, start_at_ms=start_at,
                              symbol=args.symbol, port=args.port, exchanges=exchanges,
                              ws_push_interval_s=args.ws_push_interval)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    print(f"listening on {server.url}", flush=True)
    t0 = time.monotonic()
    try:
        for at_s, kind, n in args.fault_schedule:
            if stop.wait(max(0.0, t0 + at_s - time.monotonic())):
                break
            if kind in ("refuse", "ws_quiet"):
                server.inject(kind, duration_s=n)
            else:
                server.inject(kind, count=1 if n is None else int(n))
            log.info("injected %s (%s)", kind, n)
        stop.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
