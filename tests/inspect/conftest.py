"""Shared fixtures: one session-wide database with a few stored runs, and a CLI runner."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.inspect_trades import main
from store.repository import RunSpec, create_run
from tests.inspect.factories import StoredRun, make_db, store_golden_run, store_zscore_run


@dataclass(frozen=True)
class RunsDb:
    path: Path
    golden: StoredRun
    zscore: StoredRun
    running: StoredRun  # a paper run with no bars yet


@pytest.fixture(scope="session")
def runs_db(tmp_path_factory: pytest.TempPathFactory) -> RunsDb:
    path = tmp_path_factory.mktemp("inspect") / "runs.db"
    db = make_db(path)
    golden = store_golden_run(db)
    zscore = store_zscore_run(db)
    running_id = create_run(db, RunSpec(mode="paper", strategy="zscore", initial_cash=1_000.0, name="fresh-paper",
                                        symbol="BTC/USDT", timeframe="1m"))
    db.dispose()
    return RunsDb(path, golden, zscore, StoredRun(running_id, "fresh-paper"))


@dataclass(frozen=True)
class CliResult:
    status: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run ``inspect_trades.py`` in-process: cli(*args) -> CliResult (argparse exits become statuses)."""
    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()
        try:
            status = main([str(a) for a in args])
        except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
            status = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(status, captured.out, captured.err)
    return run
