"""Real-parts helpers for the paper-trading tests: run_paper.py subprocesses, the loopback
exchange, a real SQLite file read with plain sqlite3 (an oracle independent of the
repository code), and run_backtest.py's main() as the reference.

Determinism: every server starts with its clock FROZEN ``START_OFFSET_MS`` into candle
``start_index``, so the paper run's first live candle (``trade_from``) is exactly
``bars[start_index]``; once the trader logs that its run exists, the clock is released at
``speed`` (see :func:`release_clock`). Same candles + same start = same run, so a backtest
over the candles the run consumed is an exact oracle for its orders, fills, trades and equity.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from domain.types import Bar
from store.rows import KEYED_TABLES
from tests.series_oracle import series_rows
from testkit.candles import random_walk_bars, write_candles_csv
from testkit.loopback_exchange import LoopbackExchange

REPO = Path(__file__).resolve().parents[2]
TF_MS = 60_000
START_OFFSET_MS = 30_000  # the frozen clock sits half-way into the first live candle
ZSCORE_WARMUP = 52  # run_paper's default for zscore (window 50 + 2)
# Tiny walk-forward settings: 432-bar windows (>= 200 feature rows after the 169-bar feature
# warm-up), a refit every 72 bars, small and quick networks.
SCORE_OPTS = ["--train-days", "0.3", "--retrain-days", "0.05", "--train-steps", "100", "--warm-steps", "20",
              "--hidden", "32", "--threshold-quantile", "0.95", "--seed", "3", "--model-target", "state"]
SCORE_WARMUP = 432 + 171  # run_paper: train bars + feature warm-up (169) + 2
FAKE_KEY = "PAPERTESTKEY0123456789abcdefXYZ"
FAKE_SECRET = "PAPERTESTSECRETzyxwvu9876543210"
TABLE_COLUMNS = {
    "orders": ("client_id, ts, type, side, qty, target_fraction, price, reason, status, signal, threshold, "
               "model_version", "ts, client_id"),
    "fills": ("order_client_id, ts, side, qty, price, fee, reason", "ts, id"),
    "trades": ("seq, side, qty, entry_ts, exit_ts, entry_price, exit_price, gross_pnl, fees, pnl, return_pct, "
               "exit_reason, bars_held", "seq"),
    "equity": ("ts, cash, position, close, equity", "ts"),
    "signals": ("ts, signal, threshold, unusualness, model_version", "ts"),
    "model_versions": ("fold_index, train_start_ts, train_end_ts, trade_start_ts, trade_end_ts, objective, seed, "
                       "threshold, steps", "fold_index"),
}


def make_bars(n: int, seed: int = 11) -> list[Bar]:
    """Seeded 1m random walk, 0.2 % per-candle volatility (trades for zscore and score)."""
    return random_walk_bars(n, seed=seed, volatility=0.002)


# ---------------------------------------------------------------------- loopback server
def frozen_server(bars: Sequence[Bar], start_index: int, **kwargs: Any) -> LoopbackExchange:
    """A started loopback exchange, clock frozen inside candle ``start_index``."""
    kwargs.setdefault("stall_s", 1.5)
    return LoopbackExchange(bars, "1m", speed=0.0, start_at_ms=bars[start_index].ts_ms + START_OFFSET_MS,
                            **kwargs).start()


def release_clock(proc: "PaperProcess", server: LoopbackExchange, speed: float, timeout_s: float = 30.0) -> None:
    """Start the server clock once the trader has created (or resumed) its run."""
    if not proc.wait_err(("new run ", "resumed run "), timeout_s):
        raise AssertionError(f"trader never started its run (rc={proc.poll()}):\n{proc.stderr_text()[-2000:]}")
    server.set_speed(speed)


# ---------------------------------------------------------------------- run_paper.py subprocess
def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.endswith(("_API_KEY", "_API_SECRET", "_SECRET")) and "proxy" not in k.lower()}
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def paper_args(url: str, db: Path, name: str, *, strategy: str = "zscore", max_bars: int | None = None,
               extra: Sequence[str] = ()) -> list[str]:
    args = ["--exchange", "binance", "--exchange-url", url, "--symbol", "BTC/USDT", "--timeframe", "1m",
            "--strategy", strategy, "--db", str(db), "--run-name", name, "--poll-interval", "0.05",
            "--timeout-ms", "500"]
    if max_bars is not None:
        args += ["--max-bars", str(max_bars)]
    return args + list(extra)


class PaperProcess:
    """``python run_paper.py ARGS`` with stdout/stderr collected line by line as they come."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, str(REPO / "run_paper.py"), *self.args], cwd=REPO,
                                     env=env if env is not None else child_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.out: list[str] = []
        self.err: list[str] = []
        self.out_times: list[float] = []  # time.monotonic() at which each stdout line arrived
        self._cond = threading.Condition()
        self._readers = [threading.Thread(target=self._pump, args=(self.proc.stdout, self.out, self.out_times),
                                          daemon=True),
                         threading.Thread(target=self._pump, args=(self.proc.stderr, self.err, None), daemon=True)]
        for t in self._readers:
            t.start()

    def _pump(self, stream: Any, sink: list[str], times: list[float] | None) -> None:
        for line in stream:
            with self._cond:
                sink.append(line.rstrip("\n"))
                if times is not None:
                    times.append(time.monotonic())
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait_until(self, pred: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until ``pred()`` holds; False on timeout or when the process ended without it."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                if pred():
                    return True
                if self.proc.poll() is not None and not any(t.is_alive() for t in self._readers):
                    return pred()
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))

    def wait_lines(self, n: int, timeout_s: float = 30.0) -> bool:
        return self.wait_until(lambda: len(self.out) >= n, timeout_s)

    def wait_err(self, needles: str | Sequence[str], timeout_s: float = 30.0, count: int = 1) -> bool:
        needles = (needles,) if isinstance(needles, str) else tuple(needles)
        return self.wait_until(lambda: sum(any(n in line for n in needles) for line in self.err) >= count,
                               timeout_s)

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> int:
        self.proc.send_signal(signal.SIGKILL)
        return self.finish(10)

    def finish(self, timeout_s: float = 60.0) -> int:
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"run_paper.py did not exit within {timeout_s}s; stderr tail:\n"
                                 f"{self.stderr_text()[-3000:]}") from None
        for t in self._readers:
            t.join(5)
        return rc

    def stderr_text(self) -> str:
        with self._cond:
            return "\n".join(self.err)

    def stdout_text(self) -> str:
        with self._cond:
            return "\n".join(self.out)


def run_to_end(server: LoopbackExchange, args: Sequence[str], *, speed: float, timeout_s: float = 60.0,
               env: dict[str, str] | None = None) -> tuple[PaperProcess, int]:
    """Run run_paper.py until it exits (the server clock released once its run exists); then stop the server.

    Returns the process (for its output) and its exit status; a process still alive on the way out is killed.
    """
    proc = PaperProcess(args, env=env)
    try:
        release_clock(proc, server, speed=speed)
        rc = proc.finish(timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
    return proc, rc


# ---------------------------------------------------------------------- the SQLite file, read directly
def _connect(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)


def query(db: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    con = _connect(db)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def run_row(db: Path, *, name: str | None = None, run_id: str | None = None) -> dict[str, Any] | None:
    con = _connect(db)
    con.row_factory = sqlite3.Row
    try:
        if name is not None:
            row = con.execute("SELECT * FROM runs WHERE name = ?", (name,)).fetchone()
        else:
            row = con.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return dict(row) if row is not None else None
    finally:
        con.close()


def count_bars(db: Path, name: str) -> int:
    """Committed candles of the named run (0 while it does not exist yet)."""
    try:
        rows = query(db, "SELECT count(*) FROM bars JOIN runs ON runs.id = bars.run_id WHERE runs.name = ?", (name,))
    except sqlite3.OperationalError:  # the file or its tables are not there yet
        return 0
    return rows[0][0]


def table_rows(db: Path, run_id: str) -> dict[str, list[tuple]]:
    """Every result table of a run, in a canonical order, without row ids (per-bar series: chunks + tail)."""
    out = {}
    for table, (cols, order) in TABLE_COLUMNS.items():
        if table in ("equity", "signals"):
            out[table] = series_rows(lambda sql, params: query(db, sql, params), run_id, table)
        else:
            owner = "run_key = (SELECT key FROM runs WHERE id = ?)" if table in KEYED_TABLES else "run_id = ?"
            out[table] = query(db, f"SELECT {cols} FROM {table} WHERE {owner} ORDER BY {order}", (run_id,))
    return out


def stored_bars(db: Path, run_id: str) -> list[Bar]:
    return [Bar(*r) for r in query(db, "SELECT ts, open, high, low, close, volume FROM bars WHERE run_id = ? "
                                       "ORDER BY ts", (run_id,))]


def _same(a: Any, b: Any, rel: float) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or math.isclose(a, b, rel_tol=rel, abs_tol=0.0)
    return a == b


def assert_same_rows(actual: dict[str, list[tuple]], expected: dict[str, list[tuple]], *,
                     rel: float = 1e-12, tables: Sequence[str] | None = None) -> None:
    """Table by table: same number of rows, and every value equal (floats: exact or within ``rel``)."""
    for table in tables or expected:
        a, e = actual[table], expected[table]
        assert len(a) == len(e), f"{table}: {len(a)} rows vs {len(e)} expected\nactual: {a[:5]}\nexpected: {e[:5]}"
        for i, (ra, re) in enumerate(zip(a, e)):
            assert len(ra) == len(re) and all(_same(x, y, rel) for x, y in zip(ra, re)), (
                f"{table} row {i} differs:\n actual   {ra}\n expected {re}")


def check_run_integrity(db: Path, run_id: str) -> dict[str, Any]:
    """No candle or result lost or duplicated: bars unique and contiguous, one equity row per live
    bar, the run's bookkeeping (last bar, bar count) matching the rows. Returns the run row."""
    run = run_row(db, run_id=run_id)
    assert run is not None
    ts = [r[0] for r in query(db, "SELECT ts FROM bars WHERE run_id = ? ORDER BY ts", (run_id,))]
    assert ts, "no bars stored"
    assert len(ts) == len(set(ts)), "duplicate candles in bars"
    assert ts == list(range(ts[0], ts[-1] + TF_MS, TF_MS)), "bars are not contiguous"
    assert ts[0] == json.loads(run["params"])["history_from_ts"], "the first stored candle is not the run's first"
    live = [t for t in ts if t >= run["trade_from_ts"]]
    eq = [r[0] for r in series_rows(lambda sql, params: query(db, sql, params), run_id, "equity")]
    assert eq == live, f"equity rows ({len(eq)}) are not exactly one per live bar ({len(live)})"
    assert run["last_bar_ts"] == ts[-1] and run["end_ts"] == ts[-1]
    assert run["start_ts"] == ts[0]
    assert run["bars_processed"] == len(ts), f"bars_processed {run['bars_processed']} vs {len(ts)} stored bars"
    sig = [r[0] for r in series_rows(lambda sql, params: query(db, sql, params), run_id, "signals")]
    assert len(sig) == len(set(sig)) and all(t >= run["trade_from_ts"] for t in sig)
    seqs = [r[0] for r in query(db, "SELECT seq FROM trades WHERE run_key = (SELECT key FROM runs WHERE id = ?) "
                                       "ORDER BY seq", (run_id,))]
    assert seqs == list(range(len(seqs)))
    orphan = query(db, "SELECT count(*) FROM fills f WHERE f.run_key = (SELECT key FROM runs WHERE id = ?) AND NOT "
                       "EXISTS (SELECT 1 FROM orders o WHERE o.run_key = f.run_key AND o.client_id = f.order_client_id)",
                   (run_id,))[0][0]
    assert orphan == 0, "fills without an order"
    return run


# ---------------------------------------------------------------------- the backtest oracle
def backtest_rows(bars: Sequence[Bar], strategy: str, trade_from_ms: int, workdir: Path,
                  extra: Sequence[str] = (), tag: str = "bt") -> tuple[dict[str, Any], dict[str, list[tuple]]]:
    """``run_backtest.py --data CSV --strategy S --trade-from TS --json --db DB`` (its main(), in
    process) over exactly ``bars``; returns the JSON payload and the run's stored rows."""
    import run_backtest

    csv_path = write_candles_csv(workdir / f"{tag}.csv", bars)
    db = workdir / f"{tag}.db"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = run_backtest.main(["--data", str(csv_path), "--strategy", strategy, "--trade-from",
                                str(trade_from_ms), "--json", "--db", str(db), *extra])
    assert rc == 0, f"run_backtest.py failed with {rc}"
    payload = json.loads(buf.getvalue())
    return payload, table_rows(db, payload["run_id"])
