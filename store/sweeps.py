"""Sweeps in the store: the sweep row, and each finished run written with its link in ONE transaction.

Only the sweep's driver calls these (never the workers), so there is one writer
per sweep and one connection, whatever the number of workers. A configuration is
identified by ``config_hash``; (sweep, role, hash) is unique, so a sweep killed
at any moment and restarted stores every configuration exactly once.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.orm import Session

from store.db import StoreError, delete_sweep_hint
from store.schema import RunRow, SweepRow, SweepRunRow
from store.provenance import utc_now_iso
from store.repository import RunSpec, new_run_row, write_prepared
from store.rows import PreparedRun


@dataclass(frozen=True)
class SweepLink:
    """Where a run sits in its sweep."""

    sweep_id: str
    role: str  # trial | holdout
    config_hash: str
    params: dict[str, Any]
    data_path: str
    data_hash: str
    seed: int | None


def open_sweep(engine: Engine, name: str, strategy: str, spec: dict[str, Any]) -> tuple[str, bool]:
    """(sweep id, resumed?). Resuming needs the same strategy and the same ``select_until`` split."""
    now = utc_now_iso()
    with Session(engine) as session, session.begin():
        row = session.scalar(select(SweepRow).where(SweepRow.name == name))
        if row is not None:
            if row.strategy != strategy:
                raise StoreError(f"sweep {name!r} exists for strategy {row.strategy!r}, not {strategy!r}; use "
                                 f"another --name, or delete that sweep: {delete_sweep_hint(name)}")
            if (row.spec or {}).get("select_until") != spec.get("select_until"):
                raise StoreError(f"sweep {name!r} was run with --select-until "
                                 f"{(row.spec or {}).get('select_until')!r}; resume it with the same split, "
                                 f"use another --name, or delete that sweep: {delete_sweep_hint(name)}")
            row.spec, row.status, row.updated_at = spec, "running", now
            return row.id, True
        sweep_id = uuid.uuid4().hex
        session.add(SweepRow(id=sweep_id, name=name, strategy=strategy, spec=spec, status="running",
                             created_at=now, updated_at=now))
    return sweep_id, False


def stored_configs(engine: Engine, sweep_id: str, role: str = "trial") -> dict[str, str]:
    """config_hash → run status of the sweep's stored runs."""
    with Session(engine) as session:
        rows = session.execute(select(SweepRunRow.config_hash, RunRow.status)
                               .join(RunRow, RunRow.id == SweepRunRow.run_id)
                               .where(SweepRunRow.sweep_id == sweep_id, SweepRunRow.role == role)).all()
    return {h: status for h, status in rows}


def save_sweep_run(engine: Engine, spec: RunSpec, link: SweepLink, finished: PreparedRun | None,
                   error: str | None = None) -> str:
    """Store one finished (or failed, with ``error``) run and its link in one transaction.

    A failed run stored earlier under the same hash is replaced (a resume retries
    failures); a completed one is never written twice (the unique key refuses it).
    """
    row = new_run_row(spec, status="running" if finished is not None else "failed", error=error,
                      run_id=None if finished is None else finished.run_id, dialect=engine.dialect.name)
    run_id = row.id
    # Unset (None) columns are left out, so a database default (PostgreSQL's run-key sequence) applies.
    run_values = {c.key: value for c in RunRow.__table__.columns if (value := getattr(row, c.key)) is not None}
    with engine.begin() as conn:
        old = conn.execute(select(SweepRunRow.run_id).where(
            SweepRunRow.sweep_id == link.sweep_id, SweepRunRow.role == link.role,
            SweepRunRow.config_hash == link.config_hash)).scalars().all()
        if old:
            conn.execute(delete(SweepRunRow).where(SweepRunRow.run_id.in_(old)))
            conn.execute(delete(RunRow).where(RunRow.id.in_(old), RunRow.status == "failed"))
        conn.execute(insert(RunRow.__table__).values(**run_values))  # one row: key may be an expression
        conn.execute(insert(SweepRunRow.__table__), [{
            "run_id": run_id, "sweep_id": link.sweep_id, "role": link.role, "config_hash": link.config_hash,
            "params": link.params, "data_path": link.data_path, "data_hash": link.data_hash, "seed": link.seed}])
        if finished is not None:
            write_prepared(conn, finished)
    return run_id


def finish_sweep(engine: Engine, sweep_id: str, status: str, summary: dict[str, Any] | None = None) -> None:
    values: dict[str, Any] = {"status": status, "updated_at": utc_now_iso()}
    if summary is not None:
        values["summary"] = summary
    with Session(engine) as session, session.begin():
        session.execute(update(SweepRow).where(SweepRow.id == sweep_id).values(**values))


def sweep_runs(engine: Engine, sweep_id: str, role: str | None = None) -> list[dict[str, Any]]:
    """The sweep's runs with their link fields, status and metrics, oldest first."""
    query = (select(RunRow.id, RunRow.status, RunRow.error, RunRow.metrics, RunRow.created_at, RunRow.timeframe,
                    SweepRunRow.role, SweepRunRow.config_hash, SweepRunRow.params, SweepRunRow.data_path,
                    SweepRunRow.data_hash, SweepRunRow.seed)
             .join(SweepRunRow, SweepRunRow.run_id == RunRow.id).where(SweepRunRow.sweep_id == sweep_id))
    if role is not None:
        query = query.where(SweepRunRow.role == role)
    with Session(engine) as session:
        rows = session.execute(query.order_by(RunRow.created_at, RunRow.id)).all()
    return [dict(r._mapping) for r in rows]
