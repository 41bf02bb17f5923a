"""Shared runs for the paper-trading tests (all real: run_paper.py subprocesses, ccxt, the loopback
exchange, SQLite files). The zscore run is made once per session because three test files read it:
its parity with the backtest, the API keys it was given, and resuming it with other settings."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from domain.types import Bar
from testkit.loopback_exchange import LoopbackExchange

from .helpers import (FAKE_KEY, FAKE_SECRET, SCORE_OPTS, SCORE_WARMUP, PaperProcess, child_env, frozen_server,
                      make_bars, paper_args, release_clock, run_row)

SEED = 5  # seed 5 gives 13 zscore trades in the 200 live candles below (checked in the tests)
ZSCORE_START = 60  # first live candle of the zscore run (warm-up 52: candles 8..59)
ZSCORE_LIVE = 200
SCORE_START = SCORE_WARMUP + 15  # first live candle of the score run (warm-up: candles 15..617)
SCORE_LIVE = 150


@pytest.fixture(scope="session")
def bars() -> list[Bar]:
    """1,800 seeded 1m candles: enough for 1,500 warm-up candles + live ones + fault pauses."""
    return make_bars(1800, SEED)


@dataclass
class PaperRun:
    server: LoopbackExchange
    db: Path
    name: str
    rc: int
    stdout: str
    stderr: str
    run: dict[str, Any]
    start_index: int
    workdir: Path


@pytest.fixture(scope="session")
def zscore_paper(bars: list[Bar], tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaperRun]:
    """200 live candles of zscore at 3,000x, API keys in the environment (they must go nowhere)."""
    workdir = tmp_path_factory.mktemp("zscore_paper")
    db = workdir / "paper.db"
    server = frozen_server(bars, ZSCORE_START)
    env = child_env({"BINANCE_API_KEY": FAKE_KEY, "BINANCE_API_SECRET": FAKE_SECRET, "BINANCE_SECRET": FAKE_SECRET})
    proc = PaperProcess(paper_args(server.url, db, "zs-parity", max_bars=ZSCORE_LIVE), env=env)
    try:
        release_clock(proc, server, speed=3000)
        rc = proc.finish(60)
        run = run_row(db, name="zs-parity")
        assert run is not None
        yield PaperRun(server, db, "zs-parity", rc, proc.stdout_text(), proc.stderr_text(), run, ZSCORE_START,
                       workdir)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()


@pytest.fixture(scope="session")
def score_paper(bars: list[Bar], tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaperRun]:
    """150 live candles of the score strategy (tiny walk-forward settings) at 1,200x, uninterrupted."""
    workdir = tmp_path_factory.mktemp("score_paper")
    db = workdir / "paper.db"
    server = frozen_server(bars, SCORE_START)
    proc = PaperProcess(paper_args(server.url, db, "score-parity", strategy="score", max_bars=SCORE_LIVE,
                                   extra=SCORE_OPTS))
    try:
        release_clock(proc, server, speed=1200)
        rc = proc.finish(90)
        run = run_row(db, name="score-parity")
        assert run is not None
        yield PaperRun(server, db, "score-parity", rc, proc.stdout_text(), proc.stderr_text(), run, SCORE_START,
                       workdir)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
