"""Sweep fixtures: small candle files, a database URL per backend, and a stored-rows reader."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from feeds.synthetic import synthetic_bars

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def candles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sweep-data") / "bars.csv.gz"
    synthetic_bars(4_000, seed=11).to_frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def long_candles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Long enough that one z-score run takes a noticeable moment (for kill tests)."""
    path = tmp_path_factory.mktemp("sweep-data") / "long.csv.gz"
    synthetic_bars(30_000, seed=12).to_frame().to_csv(path, index=False)
    return path


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every sweep test runs on a SQLite file and on a fresh database of the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sweeps.db'}"
    return request.getfixturevalue("pg_server").create_database()


def rows(url: str, query: str, **params: object) -> list[tuple]:
    """Rows of a SQL query on any backend (a fresh engine: other processes write the file)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(query), params)]
    finally:
        engine.dispose()


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_cli(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *[str(a) for a in args]], cwd=REPO, env=child_env(),
                          capture_output=True, text=True, timeout=timeout)


def parse_json(out: str) -> dict:
    return json.loads(out)
