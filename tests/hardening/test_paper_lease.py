"""Issue 8 item 5: one process drives a paper run at a time (real run_paper.py processes, real ccxt,
the loopback exchange, a real SQLite file read with plain sqlite3).

Before the lease, two processes with the same --run-name either died with a raw IntegrityError or
the newcomer wrote a ReplayMismatch into the survivor's run row.
"""
from __future__ import annotations

import signal
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from domain.types import Bar
from tests.paper.helpers import (PaperProcess, assert_same_rows, backtest_rows, check_run_integrity, frozen_server,
                                 make_bars, paper_args, query, release_clock, run_row, run_to_end, stored_bars,
                                 table_rows)

START = 60  # first live candle (zscore warms up on 52)


@pytest.fixture(scope="module")
def bars() -> list[Bar]:
    return make_bars(1200, 5)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def _lease(db: Path) -> list[tuple]:
    return query(db, "SELECT run_id, owner_token, host, pid, acquired_at_ms, heartbeat_at_ms FROM run_leases")


def _assert_same_as_backtest(db: Path, run: dict, workdir: Path, tag: str) -> None:
    consumed = stored_bars(db, run["id"])
    _, expected = backtest_rows(consumed, "zscore", run["trade_from_ts"], workdir, tag=tag)
    assert len(expected["trades"]) >= 3
    assert_same_rows(table_rows(db, run["id"]), expected)


def test_two_processes_started_together_exactly_one_drives_the_run(bars: list[Bar], tmp_path: Path) -> None:
    db = tmp_path / "paper.db"
    server = frozen_server(bars, START)
    procs = [PaperProcess(paper_args(server.url, db, "twin", max_bars=80)) for _ in range(2)]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(p.poll() is not None for p in procs):
            time.sleep(0.02)
        losers = [p for p in procs if p.poll() is not None]
        assert len(losers) == 1, [p.stderr_text() for p in procs]
        loser = losers[0]
        winner = procs[1 - procs.index(loser)]
        release_clock(winner, server, speed=3000)
        rc = winner.finish(60)
        assert loser.finish(5) == 2
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        server.stop()
    lines = _error_lines(loser.stderr_text())
    assert len(lines) == 1, loser.stderr_text()
    assert lines[0].startswith("error: run 'twin' is being driven by another process: "
                               f"pid {winner.proc.pid} on host {socket.gethostname()!r}, since "), lines
    assert "Traceback" not in loser.stderr_text() and loser.stdout_text() == ""
    # The survivor carried on unharmed: finished cleanly, nothing in its row from the loser.
    assert rc == 0, winner.stderr_text()[-2000:]
    run = check_run_integrity(db, run_row(db, name="twin")["id"])
    assert run["status"] == "stopped" and run["error"] is None
    assert query(db, "SELECT count(*) FROM runs")[0][0] == 1
    assert _lease(db) == []  # released on the clean stop
    _assert_same_as_backtest(db, run, tmp_path, "twin")


def test_sigkilled_owner_is_taken_over_at_once_on_the_same_host(bars: list[Bar], tmp_path: Path) -> None:
    db = tmp_path / "paper.db"
    server = frozen_server(bars, START)
    try:
        first = PaperProcess(paper_args(server.url, db, "killed", max_bars=500))
        release_clock(first, server, speed=600)
        assert first.wait_lines(10, 30), first.stderr_text()
        first.kill()
        lease = _lease(db)
        assert len(lease) == 1 and lease[0][3] == first.proc.pid  # the dead owner's lease is still there
        started = time.monotonic()
        second = PaperProcess(paper_args(server.url, db, "killed", max_bars=40))
        assert second.wait_err("resumed run ", 20), second.stderr_text()
        assert time.monotonic() - started < 20  # no waiting for the stale timeout (60 s by default)
        assert second.finish(60) == 0, second.stderr_text()[-2000:]
    finally:
        server.stop()
    assert f"took over run 'killed' from pid {first.proc.pid}" in second.stderr_text()
    run = check_run_integrity(db, run_row(db, name="killed")["id"])
    assert run["status"] == "stopped" and _lease(db) == []
    _assert_same_as_backtest(db, run, tmp_path, "killed")


def _finished_run(bars: list[Bar], tmp_path: Path, name: str) -> tuple[Path, dict]:
    db = tmp_path / "paper.db"
    server = frozen_server(bars, START)
    proc, rc = run_to_end(server, paper_args(server.url, db, name, max_bars=5), speed=3000)
    assert rc == 0, proc.stderr_text()[-2000:]
    return db, run_row(db, name=name)


def _resume_against(bars: list[Bar], db: Path, name: str, extra: list[str] = ()) -> PaperProcess:
    last = run_row(db, name=name)["last_bar_ts"]
    nxt = next(i for i, b in enumerate(bars) if b.ts_ms == last) + 1
    server = frozen_server(bars, nxt + 2)
    try:
        proc = PaperProcess(paper_args(server.url, db, name, max_bars=2, extra=extra))
        proc.finish(60)
        return proc
    finally:
        server.stop()


def test_owner_on_another_host_is_refused_while_fresh_and_replaced_once_stale(bars: list[Bar],
                                                                            tmp_path: Path) -> None:
    db, run = _finished_run(bars, tmp_path, "remote")
    now_ms = int(time.time() * 1000)
    with sqlite3.connect(db) as con:
        con.execute("INSERT INTO run_leases VALUES (?, 'othertoken', 'trader-box-7', 4242, ?, ?)",
                    (run["id"], now_ms - 3_600_000, now_ms))
    before_run, before_rows = run_row(db, name="remote"), table_rows(db, run["id"])

    refused = _resume_against(bars, db, "remote")
    assert refused.proc.returncode == 2
    lines = _error_lines(refused.stderr_text())
    assert len(lines) == 1 and "pid 4242 on host 'trader-box-7', since " in lines[0], refused.stderr_text()
    assert run_row(db, name="remote") == before_run and table_rows(db, run["id"]) == before_rows  # untouched

    with sqlite3.connect(db) as con:  # the other host went quiet 2 minutes ago
        con.execute("UPDATE run_leases SET heartbeat_at_ms = ?", (now_ms - 120_000,))
    taken = _resume_against(bars, db, "remote", ["--lease-stale-s", "60"])
    assert taken.proc.returncode == 0, taken.stderr_text()[-2000:]
    assert "took over run 'remote' from pid 4242 on host trader-box-7" in taken.stderr_text()
    check_run_integrity(db, run["id"])
    assert run_row(db, name="remote")["bars_processed"] == before_run["bars_processed"] + 2


def test_a_process_that_lost_its_lease_stops_without_writing(bars: list[Bar], tmp_path: Path) -> None:
    db = tmp_path / "paper.db"
    server = frozen_server(bars, START)
    try:
        proc = PaperProcess(paper_args(server.url, db, "stolen", max_bars=500, extra=["--lease-stale-s", "2"]))
        release_clock(proc, server, speed=300)
        assert proc.wait_lines(5, 30), proc.stderr_text()
        with sqlite3.connect(db, timeout=30) as con:  # another host took the run over
            con.execute("UPDATE run_leases SET owner_token = 'thief', host = 'elsewhere', pid = 7")
        rc = proc.finish(30)
        bars_after = run_row(db, name="stolen")["bars_processed"]
        time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
    assert rc == 2
    errors = [line for line in proc.stderr_text().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "lost run" in errors[0] and "pid 7 on host 'elsewhere'" in errors[0], errors
    run = run_row(db, name="stolen")
    assert run["bars_processed"] == bars_after and run["status"] == "running" and run["error"] is None
    assert _lease(db)[0][1] == "thief"  # the new owner's lease is left alone


def test_a_newcomer_while_the_owner_trades_is_refused_and_writes_nothing(bars: list[Bar], tmp_path: Path) -> None:
    """The case that once wrote a ReplayMismatch into the running owner's row: the newcomer found the
    run, replayed its candles while the owner added more, and marked the owner's run failed."""
    db = tmp_path / "paper.db"
    server = frozen_server(bars, START)
    try:
        owner = PaperProcess(paper_args(server.url, db, "busy", max_bars=1000))
        release_clock(owner, server, speed=300)
        assert owner.wait_lines(10, 30), owner.stderr_text()
        newcomer = PaperProcess(paper_args(server.url, db, "busy", max_bars=5))
        assert newcomer.finish(30) == 2
        assert owner.poll() is None  # still trading
        # ... and it carries on, long enough to trade a few times (so the comparison below means something)
        assert owner.wait_lines(max(len(owner.out) + 5, 120), 60), owner.stderr_text()[-2000:]
        owner.send(signal.SIGTERM)
        assert owner.finish(60) == 0, owner.stderr_text()[-2000:]
    finally:
        server.stop()
    lines = _error_lines(newcomer.stderr_text())
    assert len(lines) == 1 and f"pid {owner.proc.pid} on host" in lines[0], newcomer.stderr_text()
    run = check_run_integrity(db, run_row(db, name="busy")["id"])
    assert run["status"] == "stopped" and run["error"] is None
    _assert_same_as_backtest(db, run, tmp_path, "busy")
