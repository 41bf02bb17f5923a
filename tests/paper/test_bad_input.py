"""Bad input to run_paper.py: a clear one-line error and a non-zero exit, fast, or, for an exchange
that is down at start, visible retries until the user stops it."""
from __future__ import annotations

import signal
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from domain.types import Bar

from .conftest import PaperRun
from .helpers import PaperProcess, count_bars, frozen_server, paper_args, query, run_row, table_rows


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_unknown_symbol_is_one_clear_line_and_exit_2(zscore_paper: PaperRun, tmp_path) -> None:
    db = tmp_path / "bad.db"
    args = paper_args(zscore_paper.server.url, db, "bad-symbol", max_bars=5)
    args[args.index("--symbol") + 1] = "DOGE/EUR"
    started = time.monotonic()
    proc = PaperProcess(args)
    rc = proc.finish(30)
    stderr = proc.stderr_text()
    assert rc == 2, stderr
    assert time.monotonic() - started < 15
    errors = _error_lines(stderr)
    assert len(errors) == 1 and "DOGE/EUR" in errors[0] and "no market" in errors[0], stderr
    assert "Traceback" not in stderr and "retry" not in stderr  # fatal at once, not retried
    assert proc.stdout_text() == ""
    assert run_row(db, name="bad-symbol") is None  # nothing was created


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_exchange_down_at_start_retries_with_log_lines_until_sigterm(tmp_path) -> None:
    """Observed behaviour: the start-up calls (load_markets) retry with back-off 0.5, 1, 2, 4 s ...,
    one WARNING line each; SIGTERM ends the wait at once with exit status 0 and no run is created.
    (Left alone it gives up after 8 attempts, about a minute, with 'error: exchange unavailable' and
    exit status 3: the start-up uses the default RetryPolicy, the live loop retries forever.)"""
    db = tmp_path / "down.db"
    proc = PaperProcess(paper_args(f"http://127.0.0.1:{_free_port()}", db, "down", max_bars=5))
    try:
        assert proc.wait_err("retry 2/", 30), proc.stderr_text()
        retries = [line for line in proc.err if "load_markets failed" in line]
        assert len(retries) >= 2 and all("WARNING" in line for line in retries)
        sent = time.monotonic()
        proc.send(signal.SIGTERM)
        rc = proc.finish(10)
        assert time.monotonic() - sent < 3
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, proc.stderr_text()
    assert "Traceback" not in proc.stderr_text()
    assert count_bars(db, "down") == 0 and query(db, "SELECT count(*) FROM runs")[0][0] == 0


def _resume(p: PaperRun, bars: list[Bar], tmp_path: Path, strategy: str, extra: list[str]
            ) -> tuple[int, str, float, Path]:
    """Resume a COPY of the session's zscore run on a fresh exchange whose next 3 candles have closed."""
    db = tmp_path / "copy.db"
    with sqlite3.connect(p.db) as src, sqlite3.connect(db) as dst:
        src.backup(dst)
    last = run_row(db, name=p.name)["last_bar_ts"]
    nxt = next(i for i, b in enumerate(bars) if b.ts_ms == last) + 1
    server = frozen_server(bars, nxt + 3)
    try:
        started = time.monotonic()
        proc = PaperProcess(paper_args(server.url, db, p.name, strategy=strategy, max_bars=3, extra=extra))
        rc = proc.finish(30)
        return rc, proc.stderr_text(), time.monotonic() - started, db
    finally:
        server.stop()


def test_resuming_a_run_with_another_strategy_is_a_clear_error(zscore_paper: PaperRun, bars: list[Bar],
                                                                tmp_path: Path) -> None:
    before = table_rows(zscore_paper.db, zscore_paper.run["id"])
    rc, stderr, seconds, db = _resume(zscore_paper, bars, tmp_path, "buyhold", [])
    assert rc == 2 and seconds < 15, stderr
    errors = _error_lines(stderr)
    assert len(errors) == 1, stderr
    assert zscore_paper.name in errors[0] and "strategy: stored 'zscore' vs given 'buyhold'" in errors[0]
    assert "Traceback" not in stderr
    # The stored run is untouched.
    assert run_row(db, name=zscore_paper.name)["status"] == "stopped"
    assert table_rows(db, zscore_paper.run["id"]) == before


@pytest.mark.parametrize("changed", [["--cash", "50000"], ["--fee-bps", "50"]], ids=["cash", "fee_bps"])
def test_resuming_a_run_with_other_money_settings_is_a_clear_error(zscore_paper: PaperRun, bars: list[Bar],
                                                                   tmp_path: Path, changed: list[str]) -> None:
    before = table_rows(zscore_paper.db, zscore_paper.run["id"])
    rc, stderr, _, db = _resume(zscore_paper, bars, tmp_path, "zscore", changed)
    assert table_rows(db, zscore_paper.run["id"]) == before, f"the run went on with {changed} (exit {rc})"
    errors = _error_lines(stderr)
    assert rc == 2 and len(errors) == 1 and changed[0].lstrip("-").replace("-", "_") in errors[0], stderr
