"""Exchange faults during live trading, through run_paper.py (the loopback exchange injects them).

Four run_paper.py processes, each with its own exchange (same candles, same frozen start), run at
once so the two 30 s rate-limit back-offs overlap with the rest:

* ``rest``: one fault after another, each a few live candles after the trader recovered from
  the previous one (HTTP 500, 503, a stalled request, connection refused for 2 s, truncated JSON
  from klines and from the time endpoint, a candle missing from two kline responses, duplicated
  candles); the clock runs on meanwhile, so after each outage the trader has candles to back-fill;
* ``rate_418`` and ``rate_429``: an IP ban / a rate limit (the trader backs off 30 s, during
  which ~300 candles close, then back-fills them);
* ``ws`` (``--ws``): the websocket goes quiet for 2 s, later it is dropped.

Each process must keep running, consume exactly the exchange's candles, and end with the same
orders, fills, trades, equity and signals as the fault-free backtest over those candles.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from domain.types import Bar
from testkit.loopback_exchange import LoopbackExchange

from .helpers import (TF_MS, ZSCORE_WARMUP, PaperProcess, assert_same_rows, backtest_rows, check_run_integrity,
                      frozen_server, paper_args, run_row, stored_bars, table_rows)

START = 60
LIVE = 150
FINISH_SPEED = 3000  # once every fault of a process has been injected and recovered from

Inject = Callable[[LoopbackExchange, PaperProcess, int, float], None]


def _freeze_and_jump(fault: Callable[[LoopbackExchange, int], None]) -> Inject:
    """Freeze the clock, let the trader handle every closed candle, inject ``fault(server, X)`` for
    the candle X in progress, then jump the clock 3 candles on so X closes with later candles."""
    def inject(server: LoopbackExchange, proc: PaperProcess, trade_from: int, speed: float) -> None:
        server.set_speed(0)
        x = server.server_time_ms() // TF_MS * TF_MS
        closed_live = (x - trade_from) // TF_MS
        assert proc.wait_lines(closed_live, 15), f"trader stuck at {len(proc.out)}/{closed_live} candles"
        fault(server, x)
        server.set_time(x + 3 * TF_MS + 30_000)
        server.set_speed(speed)
    return inject


@dataclass(frozen=True)
class Fault:
    name: str
    kind: str  # the loopback fault that must have fired
    inject: Inject
    log: str | None  # what the trader must have logged about it


@dataclass(frozen=True)
class Process:
    speed: float
    faults: tuple[Fault, ...]
    extra: tuple[str, ...] = ()
    server_kw: dict[str, Any] = field(default_factory=dict)


def _simple(name: str, kind: str, log: str | None, **kw: Any) -> Fault:
    return Fault(name, kind, lambda s, p, t, v: s.inject(kind, **kw), log)


WS_OPTS = ("--ws", "--ws-stale-s", "0.5")
PROCESSES: dict[str, Process] = {
    "rest": Process(120, (
        _simple("http_500", "http_500", "500 Internal Server Error", count=2),
        _simple("http_503", "http_503", "503 Service Unavailable", count=1, path="klines"),
        _simple("timeout", "timeout", "RequestTimeout", count=1, path="klines", stall_s=1.5),
        _simple("refuse", "refuse", "NetworkError: binance GET", duration_s=2.0),
        _simple("bad_json_klines", "bad_json", "body is not JSON", count=1, path="klines"),
        _simple("bad_json_time", "bad_json", "fetch_time: bad response", count=1, path="/time"),
        # left out of the next 2 kline responses (the feed re-fetches twice before it gives up on a candle)
        Fault("missing_candle", "missing_candle",
              _freeze_and_jump(lambda s, x: s.inject("missing_candle", count=2, ts_ms=x)),
              "missing while later ones exist; re-fetch 2/"),  # issue 8: counts were "(13/2)"
        Fault("duplicate_candle", "duplicate_candle",
              _freeze_and_jump(lambda s, x: s.inject("duplicate_candle", count=2)), None),
    )),
    "rate_418": Process(600, (_simple("http_418", "http_418", "rate limited", count=1),)),
    "rate_429": Process(600, (_simple("http_429", "http_429", "rate limited", count=1, path="klines"),)),
    # At 120x the websocket (pushes every 20 ms) beats the REST safety net (5 s of exchange time).
    "ws": Process(120, (
        _simple("ws_quiet", "ws_quiet", "no candle update for 0.5s", duration_s=2.0),
        _simple("ws_drop", "ws_drop", "closing code 1001", count=None),
    ), WS_OPTS, {"ws_push_interval_s": 0.02}),
}
FAULTS = {f.name: (proc, f) for proc, p in PROCESSES.items() for f in p.faults}
FIRST_FAULT_AFTER = 5  # live candles before the first fault
LINES_BETWEEN = 3  # live candles handled after recovering before the next fault


@dataclass
class Outcome:
    rc: int
    stdout: str
    stderr: str
    run: dict[str, Any] | None
    db: Path
    hits: dict[str, tuple[int, int]]  # fault name -> (hits of its kind before, after)
    requests: list[dict[str, Any]]
    error: str | None


def _drive(name: str, spec: Process, server: LoopbackExchange, proc: PaperProcess, db: Path,
           hits: dict[str, tuple[int, int]], errors: dict[str, str]) -> None:
    try:
        if not proc.wait_err("new run ", 90):
            raise AssertionError("no run started")
        server.set_speed(spec.speed)
        trade_from = run_row(db, name=name)["trade_from_ts"]
        mark = FIRST_FAULT_AFTER
        previous: Fault | None = None
        before = 0
        for fault in spec.faults:
            if not proc.wait_lines(mark, 90):
                raise AssertionError(f"only {len(proc.out)} live candles before {fault.name}")
            if previous is not None:
                hits[previous.name] = (before, server.fault_hits.get(previous.kind, 0))
            before = server.fault_hits.get(fault.kind, 0)
            fault.inject(server, proc, trade_from, spec.speed)
            if not proc.wait_until(lambda: server.fault_hits.get(fault.kind, 0) > before, 30):
                raise AssertionError(f"{fault.name} never fired")
            mark = len(proc.out) + LINES_BETWEEN  # (lines of a burst fetched before the fault may still come)
            previous = fault
        if not proc.wait_lines(mark, 90):
            raise AssertionError(f"only {len(proc.out)} live candles after {previous.name}")
        hits[previous.name] = (before, server.fault_hits.get(previous.kind, 0))
        server.set_speed(FINISH_SPEED)
    except BaseException as exc:  # reported by the tests
        errors[name] = f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="module")
def outcomes(bars: list[Bar], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    work = tmp_path_factory.mktemp("faults")
    servers, procs, drivers = {}, {}, []
    hits: dict[str, tuple[int, int]] = {}
    errors: dict[str, str] = {}
    try:
        for name, spec in PROCESSES.items():
            servers[name] = frozen_server(bars, START, **spec.server_kw)
            db = work / f"{name}.db"
            procs[name] = PaperProcess(paper_args(servers[name].url, db, name, max_bars=LIVE, extra=spec.extra))
            t = threading.Thread(target=_drive, args=(name, spec, servers[name], procs[name], db, hits, errors),
                                 daemon=True)
            t.start()
            drivers.append(t)
        results = {}
        for name, proc in procs.items():
            rc = proc.finish(120)
            db = work / f"{name}.db"
            results[name] = Outcome(rc, proc.stdout_text(), proc.stderr_text(), run_row(db, name=name), db,
                                    {f.name: hits.get(f.name, (0, 0)) for f in PROCESSES[name].faults},
                                    servers[name].requests, errors.get(name))
        for t in drivers:
            t.join(5)
        return results
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
        for srv in servers.values():
            srv.stop()


@pytest.fixture(scope="module")
def reference(bars: list[Bar], tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple]]:
    """The fault-free backtest over the candles every process must have consumed."""
    _, rows = backtest_rows(bars[START - ZSCORE_WARMUP:START + LIVE], "zscore", bars[START].ts_ms,
                            tmp_path_factory.mktemp("faults_ref"))
    assert len(rows["trades"]) >= 8 and len(rows["equity"]) == LIVE
    return rows


@pytest.mark.parametrize("name", list(PROCESSES))
def test_trader_keeps_running_and_matches_fault_free_backtest(name: str, outcomes: dict[str, Outcome],
                                                              reference: dict[str, list[tuple]],
                                                              bars: list[Bar]) -> None:
    out = outcomes[name]
    assert out.error is None, f"{out.error}\n{out.stderr[-3000:]}"
    assert out.rc == 0, out.stderr[-3000:]
    assert "skipping the gap" not in out.stderr and "Traceback" not in out.stderr
    run = check_run_integrity(out.db, out.run["id"])
    assert run["status"] == "stopped" and run["trade_from_ts"] == bars[START].ts_ms
    assert stored_bars(out.db, run["id"]) == bars[START - ZSCORE_WARMUP:START + LIVE]
    assert len(out.stdout.splitlines()) == LIVE
    assert_same_rows(table_rows(out.db, run["id"]), reference)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_fired_and_was_logged(fault: str, outcomes: dict[str, Outcome]) -> None:
    proc_name, spec = FAULTS[fault]
    out = outcomes[proc_name]
    assert out.error is None, out.error
    before, after = out.hits[fault]
    assert after > before, f"the {spec.kind} fault never fired"
    if spec.log is not None:
        assert spec.log in out.stderr, f"no log line with {spec.log!r}:\n{out.stderr[-3000:]}"


def test_websocket_delivers_candles_and_resubscribes(outcomes: dict[str, Outcome]) -> None:
    out = outcomes["ws"]
    subscriptions = [r for r in out.requests if r["method"] == "WS" and (r["params"] or {}).get("method") == "SUBSCRIBE"]
    assert len(subscriptions) >= 3, f"{len(subscriptions)} subscriptions: expected a reconnect after each fault"
    rest_kline_calls = sum("klines" in r["path"] for r in out.requests)
    assert rest_kline_calls < LIVE // 2, f"{rest_kline_calls} REST kline calls: the websocket delivered little"
