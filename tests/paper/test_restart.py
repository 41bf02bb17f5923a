"""Restart safety: a paper run killed (SIGKILL) at several points and restarted with the same
--run-name ends exactly like an uninterrupted run on the same exchange data, with no row lost
or duplicated; SIGTERM stops it cleanly after the current candle.

Both runs get their own loopback exchange with the same candles and the same frozen start, so
both trade from the same first live candle. Phases of the interrupted run (zscore, 1,500
warm-up candles, 150 live):

1. SIGKILL during warm-up: the exchange fails every klines request after the first page, so the
   trader sits in its retry loop with exactly one committed batch of 1,000 warm-up candles;
2. SIGKILL a few live candles after the restart (it is back-filling the rest of the warm-up and
   the candles that closed meanwhile in one burst);
3. SIGKILL at an arbitrary moment while it follows the live clock;
4. SIGTERM mid-way, after a restart that had to back-fill the candles closed while it was down;
5. restart with --max-bars = what is left, to the end.
"""
from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from domain.types import Bar
from tests.series_oracle import series_rows

from .conftest import SCORE_LIVE, SCORE_START
from .helpers import (SCORE_OPTS, PaperProcess, assert_same_rows, check_run_integrity, count_bars, frozen_server,
                      paper_args, query, release_clock, run_row, stored_bars, table_rows)

START = 1510
WARMUP = 1500
LIVE = 150
SPEED = 600  # a candle every 0.1 s
NAME = "zs-restart"


@dataclass
class Phase:
    name: str
    rc: int
    stdout_lines: int
    stderr: str
    status: str
    bars: int
    live_bars: int
    equity: int
    integrity_error: str | None
    stop_latency_s: float | None = None


@dataclass
class RestartScenario:
    db: Path
    run_id: str
    phases: list[Phase] = field(default_factory=list)
    reference_db: Path | None = None
    reference_run_id: str | None = None
    reference_rc: int | None = None


def _live_bars(db: Path, run: dict[str, Any]) -> int:
    return query(db, "SELECT count(*) FROM bars WHERE run_id = ? AND ts >= ?", (run["id"], run["trade_from_ts"]))[0][0]


def _snapshot(scn: RestartScenario, name: str, proc: PaperProcess, rc: int, stop_latency_s: float | None = None
              ) -> Phase:
    run = run_row(scn.db, name=NAME)
    assert run is not None
    scn.run_id = run["id"]
    error = None
    if run["bars_processed"]:
        try:
            check_run_integrity(scn.db, run["id"])
        except AssertionError as exc:
            error = str(exc)
    counts = {"bars": query(scn.db, "SELECT count(*) FROM bars WHERE run_id = ?", (run["id"],))[0][0],
              "equity": len(series_rows(lambda sql, params: query(scn.db, sql, params), run["id"], "equity"))}
    phase = Phase(name, rc, len(proc.out), proc.stderr_text(), run["status"], counts["bars"], _live_bars(scn.db, run),
                  counts["equity"], error, stop_latency_s)
    scn.phases.append(phase)
    return phase


@pytest.fixture(scope="module")
def scenario(bars: list[Bar], tmp_path_factory: pytest.TempPathFactory) -> RestartScenario:
    work = tmp_path_factory.mktemp("restart")
    db = work / "paper.db"
    extra = ["--warmup-bars", str(WARMUP)]
    scn = RestartScenario(db, "")

    # The uninterrupted reference runs meanwhile, on its own exchange with the same data and start.
    ref_server = frozen_server(bars, START)
    ref = PaperProcess(paper_args(ref_server.url, work / "reference.db", "reference", max_bars=LIVE, extra=extra))
    server = frozen_server(bars, START)
    procs = [ref]
    try:
        release_clock(ref, ref_server, speed=3000)

        # 1. killed during warm-up, stuck retrying the second klines page.
        server.inject("http_500", count=None, duration_s=120, path="klines", skip=1)
        p = PaperProcess(paper_args(server.url, db, NAME, extra=extra))
        procs.append(p)
        release_clock(p, server, SPEED)
        assert p.wait_until(lambda: count_bars(db, NAME) >= 1000, 30), p.stderr_text()[-2000:]
        assert p.wait_err("retry", 10)
        rc = p.kill()
        server.set_speed(0)
        server.clear_faults()
        _snapshot(scn, "sigkill-warmup", p, rc)

        # 2. killed a few live candles after the restart.
        p = PaperProcess(paper_args(server.url, db, NAME, extra=extra))
        procs.append(p)
        release_clock(p, server, SPEED)
        assert p.wait_lines(5, 30), p.stderr_text()[-2000:]
        rc = p.kill()
        server.set_speed(0)
        _snapshot(scn, "sigkill-early-live", p, rc)

        # 3. killed at an arbitrary moment while following the clock (the clock keeps running while it
        #    is down, so the next start has candles to back-fill).
        p = PaperProcess(paper_args(server.url, db, NAME, extra=extra))
        procs.append(p)
        release_clock(p, server, SPEED)
        assert p.wait_lines(3, 30), p.stderr_text()[-2000:]
        time.sleep(0.37)
        rc = p.kill()
        _snapshot(scn, "sigkill-mid", p, rc)

        # 4. SIGTERM mid-way: exit status 0 right after the current candle, status 'stopped'.
        p = PaperProcess(paper_args(server.url, db, NAME, extra=extra))
        procs.append(p)
        assert p.wait_err("resumed run ", 30), p.stderr_text()[-2000:]
        assert p.wait_lines(20, 30), p.stderr_text()[-2000:]
        sent = time.monotonic()
        p.send(signal.SIGTERM)
        rc = p.finish(10)
        _snapshot(scn, "sigterm", p, rc, stop_latency_s=time.monotonic() - sent)
        server.set_speed(0)

        # 5. to the end.
        left = LIVE - scn.phases[-1].live_bars
        assert left > 0, f"the run already had {scn.phases[-1].live_bars} live candles; raise LIVE"
        p = PaperProcess(paper_args(server.url, db, NAME, max_bars=left, extra=extra))
        procs.append(p)
        release_clock(p, server, 3000)
        rc = p.finish(60)
        _snapshot(scn, "final", p, rc)

        scn.reference_rc = ref.finish(60)
        scn.reference_db = work / "reference.db"
        scn.reference_run_id = run_row(scn.reference_db, name="reference")["id"]
        return scn
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        server.stop()
        ref_server.stop()


def _phase(scn: RestartScenario, name: str) -> Phase:
    return next(p for p in scn.phases if p.name == name)


def test_sigkill_during_warmup_leaves_whole_batches_and_resumes_after_them(scenario: RestartScenario) -> None:
    p1 = _phase(scenario, "sigkill-warmup")
    assert p1.rc == -signal.SIGKILL
    assert (p1.bars, p1.equity, p1.stdout_lines, p1.status) == (1000, 0, 0, "running")
    p2 = _phase(scenario, "sigkill-early-live")
    assert "replayed 1000 stored candles" in p2.stderr


def test_kills_lose_or_duplicate_no_row(scenario: RestartScenario) -> None:
    """After every interruption: candles unique and contiguous from the run's first, exactly one
    equity row per live candle, last processed candle and candle count consistent."""
    assert [p.name for p in scenario.phases] == ["sigkill-warmup", "sigkill-early-live", "sigkill-mid", "sigterm",
                                                 "final"]
    for p in scenario.phases:
        assert p.integrity_error is None, f"{p.name}: {p.integrity_error}"
    lives = [p.live_bars for p in scenario.phases]
    assert lives == sorted(lives) and lives[-1] == LIVE
    assert all(p.rc == -signal.SIGKILL for p in scenario.phases[:3])


def test_restarted_run_equals_uninterrupted_run(scenario: RestartScenario, bars: list[Bar]) -> None:
    assert scenario.reference_rc == 0
    ref_db, ref_id = scenario.reference_db, scenario.reference_run_id
    expected = table_rows(ref_db, ref_id)
    actual = table_rows(scenario.db, scenario.run_id)
    assert len(expected["trades"]) >= 5 and len(expected["equity"]) == LIVE
    assert_same_rows(actual, expected, rel=0.0)  # same code, same candles: bit for bit
    assert stored_bars(scenario.db, scenario.run_id) == stored_bars(ref_db, ref_id) == bars[START - WARMUP:START + LIVE]
    run, ref = run_row(scenario.db, run_id=scenario.run_id), run_row(ref_db, run_id=ref_id)
    for key in ("trade_from_ts", "start_ts", "end_ts", "last_bar_ts", "bars_processed", "status"):
        assert run[key] == ref[key], key


def test_sigterm_stops_cleanly_after_the_current_candle(scenario: RestartScenario) -> None:
    before, p = _phase(scenario, "sigkill-mid"), _phase(scenario, "sigterm")
    assert p.rc == 0, p.stderr[-2000:]
    assert p.status == "stopped"
    assert p.stop_latency_s is not None and p.stop_latency_s < 3.0
    assert p.stdout_lines == p.live_bars - before.live_bars  # every candle it printed is committed, and only those
    assert "stop requested" in p.stderr and "Traceback" not in p.stderr


def test_score_run_killed_mid_way_resumes_with_its_stored_models(score_paper, bars: list[Bar], tmp_path) -> None:
    """The score strategy, SIGKILLed after its first live refit: the restart replays the stored
    candles with the stored fold checkpoints preloaded and ends exactly like the
    uninterrupted score run of test_parity (same candles, same start)."""
    assert score_paper.rc == 0
    db, name = tmp_path / "paper.db", "score-restart"
    server = frozen_server(bars, SCORE_START)
    procs = []
    try:
        p = PaperProcess(paper_args(server.url, db, name, strategy="score", extra=SCORE_OPTS))
        procs.append(p)
        release_clock(p, server, 1200)
        assert p.wait_lines(60, 60), p.stderr_text()[-2000:]
        assert p.kill() == -signal.SIGKILL
        run = check_run_integrity(db, run_row(db, name=name)["id"])
        stored_folds = query(db, "SELECT fold_index, checkpoint FROM model_versions WHERE run_id = ? "
                                 "ORDER BY fold_index", (run["id"],))
        live = _live_bars(db, run)
        assert 60 <= live < SCORE_LIVE

        p = PaperProcess(paper_args(server.url, db, name, strategy="score", max_bars=SCORE_LIVE - live,
                                    extra=SCORE_OPTS))
        procs.append(p)
        assert p.finish(90) == 0, p.stderr_text()[-2000:]
        assert f"replayed {run['bars_processed']} stored candles" in p.stderr_text()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        server.stop()
    run = check_run_integrity(db, run["id"])
    actual = table_rows(db, run["id"])
    assert_same_rows(actual, table_rows(score_paper.db, score_paper.run["id"]), rel=0.0)
    # The folds stored before the kill are the ones the run kept (same checkpoints, not refitted copies).
    after = dict(query(db, "SELECT fold_index, checkpoint FROM model_versions WHERE run_id = ?", (run["id"],)))
    assert len(stored_folds) >= 4 and all(after[i] == blob for i, blob in stored_folds)
