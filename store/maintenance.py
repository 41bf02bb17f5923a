"""Deleting a stored run or sweep: how a name held by a failed or interrupted run is freed, a sweep's name
made free for a new sweep, or results no longer wanted dropped.

Why a separate module: everything else in the store adds rows; this is the one path that removes a
run, so its safety checks live in one place:
- a run whose owner (backtest or paper process) is alive is refused: deleting it under a running
  process would make that process fail, or leave its later rows without a run;
- a run that belongs to a sweep is refused: the sweep's statistics (DSR, PBO, the best run) are
  computed over all of its runs, and a resumed sweep reruns what is missing by itself. A sweep is
  deleted whole, with all its runs (refused while it is marked running, unless forced: a sweep's
  driver records no owner to check).
The run's rows (orders, fills, trades, series chunks, model versions, owner row) go with it in the
same transaction: by foreign-key cascades on SQLite, by the same cascades and the triggers of
migration 0006 on PostgreSQL.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Row, Select, delete, func, select

from store.db import StoreError, delete_sweep_hint
from store.lease import why_owner_gone
from store.repository import find_run
from store.schema import (FillRow, ModelVersionRow, OrderRow, RunLeaseRow, RunRow, SeriesChunkRow, SweepRow,
                          SweepRunRow, TradeRow)


class NotDeletable(StoreError):
    """The run or sweep does not exist, or deleting it now could break a process or a sweep."""


@dataclass(frozen=True)
class DeletedRun:
    run_id: str
    name: str | None
    mode: str
    strategy: str
    status: str
    rows: dict[str, int]  # table → rows deleted with the run

    def describe(self) -> str:
        label = f"run {self.run_id[:12]}" + (f" ({self.name!r})" if self.name else "")
        return f"deleted {label}, {self.mode} {self.strategy}, {self.status}: {_rows_text(self.rows)}"


def delete_run(engine: Engine, ref: str, *, force: bool = False) -> DeletedRun:
    """Delete the run ``ref`` names (id, unique id prefix or name) and all its rows, in one transaction.

    ``force`` skips the check that no live process owns the run (for a run left 'running' by a
    version that recorded no owner, or an owner on another host whose heartbeat is still fresh)."""
    found = find_run(engine, ref)
    if found is None:
        raise NotDeletable(f"no run matches {ref!r} (an id, a unique id prefix or a name)")
    run_id = found.id
    with engine.begin() as conn:
        run = _locked(conn, select(RunRow).where(RunRow.id == run_id))
        if run is None:
            raise NotDeletable(f"run {run_id[:12]} was deleted meanwhile")
        sweep = conn.execute(select(SweepRow.name).join(SweepRunRow, SweepRunRow.sweep_id == SweepRow.id)
                             .where(SweepRunRow.run_id == run_id)).scalar()
        if sweep is not None:
            raise NotDeletable(f"run {run_id[:12]} belongs to sweep {sweep!r}, whose statistics are computed over "
                               f"all its runs; it is kept with the sweep ({delete_sweep_hint(sweep)} deletes the "
                               "sweep with all its runs)")
        if not force:
            _refuse_live_owner(conn, run)
        rows = _row_counts(conn, [run_id], [run.key])
        conn.execute(delete(RunRow).where(RunRow.id == run_id))  # the rest cascades
    return DeletedRun(run_id, run.name, run.mode, run.strategy, run.status, rows)


@dataclass(frozen=True)
class DeletedSweep:
    sweep_id: str
    name: str
    strategy: str
    status: str
    runs: int
    rows: dict[str, int]  # table → rows deleted with its runs

    def describe(self) -> str:
        return (f"deleted sweep {self.name!r} ({self.strategy}, {self.status}) and its {self.runs:,} runs: "
                f"{_rows_text(self.rows)}")


def delete_sweep(engine: Engine, ref: str, *, force: bool = False) -> DeletedSweep:
    """Delete the sweep named ``ref`` (or with that id), its runs and all their rows, in one transaction.

    A sweep marked 'running' is refused without ``force``: its driver may still be storing runs, and
    unlike a run it records no owner process to ask."""
    with engine.begin() as conn:
        sweep = _locked(conn, select(SweepRow).where((SweepRow.name == ref) | (SweepRow.id == ref)))
        if sweep is None:
            raise NotDeletable(f"no sweep named {ref!r}")
        if sweep.status == "running" and not force:
            raise NotDeletable(f"sweep {sweep.name!r} is marked running: its driver may still be storing runs; "
                               "stop it first, or, if it is gone, delete the sweep with --force")
        run_ids = select(SweepRunRow.run_id).where(SweepRunRow.sweep_id == sweep.id).scalar_subquery()
        runs = _count(conn, RunRow.id.in_(run_ids))
        rows = _row_counts(conn, run_ids, select(RunRow.key).where(RunRow.id.in_(run_ids)).scalar_subquery())
        conn.execute(delete(RunRow).where(RunRow.id.in_(run_ids)))  # their rows and sweep links cascade
        conn.execute(delete(SweepRow).where(SweepRow.id == sweep.id))
    return DeletedSweep(sweep.id, sweep.name, sweep.strategy, sweep.status, runs, rows)


def _refuse_live_owner(conn: Connection, run: Row[Any]) -> None:
    owner = conn.execute(select(RunLeaseRow).where(RunLeaseRow.run_id == run.id)).first()
    if owner is not None:
        if why_owner_gone(owner.host, owner.pid, owner.heartbeat_at_ms) is None:
            raise NotDeletable(f"run {run.id[:12]} is being run by pid {owner.pid} on host {owner.host!r}; "
                               "stop that process first")
    elif run.status == "running":
        raise NotDeletable(f"run {run.id[:12]} is 'running' and records no owner process to check; if its "
                           "process is gone, delete it with --force")


def _locked(conn: Connection, query: Select[Any]) -> Row[Any] | None:
    """The row ``query`` finds, read inside a write lock so that no writer comes between the checks and
    the delete: the row itself on PostgreSQL (FOR UPDATE), the whole file on SQLite (BEGIN IMMEDIATE)."""
    if conn.dialect.name == "postgresql":
        return conn.execute(query.with_for_update()).first()
    conn.exec_driver_sql("BEGIN IMMEDIATE")
    return conn.execute(query).first()


def _row_counts(conn: Connection, run_ids: Collection[str] | Any, run_keys: Collection[int] | Any) -> dict[str, int]:
    """Rows of these runs (ids and keys: lists or subqueries) per table, as a delete of the runs removes them."""
    return {"orders": _count(conn, OrderRow.run_key.in_(run_keys)),
            "fills": _count(conn, FillRow.run_key.in_(run_keys)),
            "trades": _count(conn, TradeRow.run_key.in_(run_keys)),
            "series_chunks": _count(conn, SeriesChunkRow.run_id.in_(run_ids)),
            "model_versions": _count(conn, ModelVersionRow.run_id.in_(run_ids))}


def _rows_text(rows: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {table.replace('_', ' ')}" for table, n in rows.items())


def _count(conn: Connection, condition: ColumnElement[bool]) -> int:
    table = condition.left.table  # type: ignore[attr-defined]  # a comparison: its left side is a column
    return int(conn.execute(select(func.count()).select_from(table).where(condition)).scalar_one())
