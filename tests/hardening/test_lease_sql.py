"""The run lease as SQL: the same rules on a SQLite file and on a real PostgreSQL server (started
here with Debian's postgresql-15 binaries), including a race of many owners for one run."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from store.db import init_db
from store.lease import LeaseHeld, LeaseLost, LeaseOwner, acquire_lease, release_lease, renew_lease
from store.models import RunLeaseRow
from store.repository import RunSpec, create_run, mark_run

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip("postgresql-15 binaries not installed")
    base = Path(tempfile.mkdtemp(prefix="lease-pg-"))
    as_pg: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(base, "postgres", "postgres")
        as_pg = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
    data, port = base / "data", _free_port()
    run = dict(check=True, capture_output=True, timeout=120)
    subprocess.run([*as_pg, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                    "--no-sync"], **run)
    subprocess.run([*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(base / "log"), "-o",
                    f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off", "start"], **run)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
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
