"""The run lease as SQL: the same rules on a SQLite file and on a real PostgreSQL server (the
session's throwaway cluster, tests/conftest.py), including a race of many owners for one run."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from store.db import init_db
from store.lease import LeaseHeld, LeaseLost, LeaseOwner, acquire_lease, release_lease, renew_lease
from store.schema import RunLeaseRow
from store.repository import RunSpec, create_run, mark_run

@pytest.fixture(scope="module")
def postgres_url(pg_server) -> str:
    """A database of the session's throwaway PostgreSQL server (tests/conftest.py, testkit/pgserver.py)."""
    return pg_server.create_database("lease")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def db(request, tmp_path: Path):
    url = str(tmp_path / "lease.db") if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = init_db(url)
    yield engine
    engine.dispose()


def _owner(host: str, pid: int) -> LeaseOwner:
    return LeaseOwner(f"{host}-{pid}-{time.monotonic_ns()}"[:32], host, pid)


def test_rules(db) -> None:
    me = LeaseOwner.me()
    run_id = create_run(db, RunSpec(mode="paper", strategy="zscore", initial_cash=1.0, name=f"r{time.time_ns()}"),
                        extra_rows=[me.new_row()])  # born leased
    other = _owner("elsewhere", 99)
    with pytest.raises(LeaseHeld, match="pid .* on host .* since"):
        acquire_lease(db, run_id, other, run_label="r", stale_after_s=60)
    renew_lease(db, run_id, me.token)
    mark_run(db, run_id, "running", lease_token=me.token)
    with Session(db) as s, s.begin():  # the owner went quiet two minutes ago
        s.execute(update(RunLeaseRow).values(heartbeat_at_ms=int(time.time() * 1000) - 120_000))
    acquire_lease(db, run_id, other, run_label="r", stale_after_s=60)
    with pytest.raises(LeaseLost, match="elsewhere"):
        renew_lease(db, run_id, me.token)
    with pytest.raises(LeaseLost):
        mark_run(db, run_id, "failed", "x", lease_token=me.token)  # writes nothing to the new owner's run
    release_lease(db, run_id, me.token)  # not ours: a no-op
    renew_lease(db, run_id, other.token)
    release_lease(db, run_id, other.token)
    acquire_lease(db, run_id, me, run_label="r")  # free again


def test_many_owners_racing_for_one_run_exactly_one_wins(db) -> None:
    run_id = create_run(db, RunSpec(mode="paper", strategy="zscore", initial_cash=1.0, name=f"race{time.time_ns()}"))
    owners = [_owner(f"host{i}", 1000 + i) for i in range(8)]
    results: dict[int, str] = {}
    start = threading.Barrier(len(owners))

    def contend(i: int) -> None:
        start.wait()
        try:
            acquire_lease(db, run_id, owners[i], run_label="race", stale_after_s=60)
            results[i] = "won"
        except LeaseHeld:
            results[i] = "held"

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(len(owners))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results.values()) == ["held"] * 7 + ["won"], results
    winner = next(i for i, r in results.items() if r == "won")
    with Session(db) as s:
        row = s.get(RunLeaseRow, run_id)
        assert (row.owner_token, row.host) == (owners[winner].token, owners[winner].host)
