"""Session-wide fixtures: the throwaway PostgreSQL server behind the ``pg`` tests (testkit/pgserver.py)."""
from __future__ import annotations

from typing import Iterator

import pytest

from testkit.pgserver import PgServer, PgUnavailable, start_server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        server = start_server()
    except PgUnavailable as exc:
        pytest.skip(f"no PostgreSQL server: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh, empty PostgreSQL database for one test (URL with the psycopg 3 driver)."""
    return pg_server.create_database()


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh database URL: a SQLite file, then (marked ``pg``) a PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "any.db")
    return request.getfixturevalue("pg_server").create_database()
