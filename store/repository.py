"""Owns every transaction (STYLE.md §9): writes the rows store/rows.py builds from domain objects, and reads runs back.

- Writes go through SQLAlchemy Core (executemany), never one ORM object per row.
- A backtest's results land in ONE transaction with the status change to
  'completed'; if anything fails the run row says 'failed' and nothing else
  of it is written.
- A paper run commits each closed bar (its candle, orders, fills, trades,
  equity, signal and the run's last processed bar) in one transaction, so a
  restart resumes exactly after the last committed bar.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from domain.events import EngineEvents
from domain.records import ModelVersionRecord
from domain.redact import mask_secrets, mask_text
from domain.strict_json import jsonable
from domain.types import FINAL_STATUSES, Bar, Fill, Order, SignalPoint, Trade
from store.batch import PackedRows, RowBatch
from store.bulk import write_batch, write_packed
from store.db import StoreError, delete_run_hint
from store.lease import verify_and_renew
from store.provenance import code_version, utc_now_iso
from store.rows import (KEYED_TABLES, PreparedRun, activity_rows, backtest_chunks, backtest_results,
                        model_version_rows, new_run_id)
from store.schema import BarRow, EquityRow, FillRow, ModelVersionRow, OrderRow, RunRow, TradeRow, of_run, run_key_of
from store.series import (GROUPS, SeriesFrame, compact_tail, last_chunked_values, read_group, stored_length,
                          write_chunks)
from store.writer import OrderedWriter, can_write_from_thread


@dataclass(frozen=True)
class RunSpec:
    """What identifies and parameterises a run (saved with it, STYLE.md §12)."""

    mode: str
    strategy: str
    initial_cash: float
    params: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    engine: str = "native"
    symbol: str | None = None
    exchange: str | None = None
    timeframe: str | None = None
    data_source: str | None = None
    data_hash: str | None = None
    trade_from_ts: int | None = None


class RunNameTaken(StoreError):
    """Another run already has this name (names are unique per database)."""


def refuse_taken_name(engine: Engine, name: str) -> None:
    """Raise :class:`RunNameTaken`, naming the run that owns ``name``, if there is one."""
    existing = find_run_by_name(engine, name)
    if existing is not None:
        raise RunNameTaken(_name_taken_message(existing))


def _name_taken_message(run: RunRow) -> str:
    return (f"run name {run.name!r} is already used by run {run.id[:12]} ({run.mode} {run.strategy}, "
            f"created {run.created_at}, status {run.status}); choose another name, or free it with "
            f"`{delete_run_hint(run.id)}` (refused while its process runs)")


def create_run(engine: Engine, spec: RunSpec, *, extra_rows: Sequence[Any] = ()) -> str:
    """Insert a run in status 'running' and commit it at once, so a crash is visible.

    URLs in the data source and parameters are stored masked (no credentials), and
    non-finite numbers as null. ``extra_rows`` (e.g. the run's lease) are added in the
    same transaction. A name already taken, even by a run inserted a moment ago by
    another process, raises :class:`RunNameTaken` naming that run.
    """
    row = new_run_row(spec, dialect=engine.dialect.name)
    run_id = row.id
    try:
        with Session(engine) as session, session.begin():
            session.add(row)
            session.flush()  # the run row first: extra rows refer to it
            for row in extra_rows:
                setattr(row, "run_id", run_id)
                session.add(row)
    except IntegrityError:
        existing = find_run_by_name(engine, spec.name) if spec.name is not None else None
        if existing is None:
            raise
        raise RunNameTaken(_name_taken_message(existing)) from None
    return run_id


def find_run_by_name(engine: Engine, name: str) -> RunRow | None:
    with Session(engine) as session:
        return session.scalar(select(RunRow).where(RunRow.name == name))


def get_run(engine: Engine, run_id: str) -> RunRow | None:
    with Session(engine) as session:
        return session.get(RunRow, run_id)


def mark_run(engine: Engine, run_id: str, status: str, error: str | None = None, *,
             lease_token: str | None = None) -> None:
    """Set a run's status (and error text, URLs masked); with ``lease_token``, only while the lease is ours."""
    error = mask_text(error) if error else error
    with Session(engine) as session, session.begin():
        if lease_token is not None:
            verify_and_renew(session, run_id, lease_token)
        session.execute(update(RunRow).where(RunRow.id == run_id)
                        .values(status=status, error=error, updated_at=utc_now_iso()))


def save_backtest(engine: Engine, run_id: str, events: EngineEvents, order_status: dict[str, str],
                  metrics: dict[str, Any], report: dict[str, Any] | None,
                  model_versions: Sequence[ModelVersionRecord] = (), start_ts: int | None = None,
                  end_ts: int | None = None) -> None:
    """Write all of a finished backtest atomically: SQL rows for orders/fills/trades (executemany),
    the per-bar series as compressed column chunks (store/series.py). See :class:`BacktestWriter`."""
    with backtest_writer(engine, run_id) as writer:
        writer.finish(events, order_status, metrics, report, model_versions, start_ts, end_ts)


def streams_while_running(engine: Engine) -> bool:
    """Whether a backtest's final rows should be written while it runs (:meth:`BacktestWriter.add_final`).

    PostgreSQL: yes, its server ingests them on another core while the loop goes on (on a 1M-bar
    run ~2 s of server work, over half of it foreign-key checks, that would otherwise follow the
    loop). SQLite: no, the open write transaction would lock every other writer out of the file
    for the whole run (minutes, when a score model trains)."""
    return engine.dialect.name == "postgresql"


@contextmanager
def backtest_writer(engine: Engine, run_id: str) -> Iterator[BacktestWriter]:
    """One transaction for all of a backtest's rows: committed when the block ends, rolled back if it raises."""
    with engine.begin() as conn, OrderedWriter(threaded=can_write_from_thread(conn)) as writer:
        if conn.dialect.name == "postgresql":
            # Open while the run goes on, idle between chunks: not a forgotten session for a
            # server's idle_in_transaction_session_timeout to end.
            conn.exec_driver_sql("SET LOCAL idle_in_transaction_session_timeout = 0")
        yield BacktestWriter(conn, run_id, writer.submit)


class BacktestWriter:
    """A backtest's rows, written into one open transaction as they become final and at the end.

    :meth:`add_final` (a domain.events.ChunkListener) writes the fills, trades and orders that
    can no longer change, each table's next slice in the order the run made them; :meth:`finish`
    writes the rest, the model versions, the series chunks and the results. Rows land in the
    same order, with the same values, whether or not anything was written early. Each write
    goes to ``submit`` (an :class:`OrderedWriter`'s), so it runs on the writer thread while the
    caller builds the next rows or runs the next bars.
    """

    def __init__(self, conn: Connection, run_id: str, submit: Callable[..., None]) -> None:
        self._conn, self._run_id, self._submit = conn, run_id, submit
        self._key = _run_key(conn, run_id)
        self._orders = self._fills = self._trades = 0  # rows of each table written so far

    @property
    def written(self) -> dict[str, int]:
        """Rows of each table handed to the writer so far."""
        return {"orders": self._orders, "fills": self._fills, "trades": self._trades}

    def add_final(self, events: EngineEvents, status: Mapping[str, str]) -> None:
        orders = events.orders
        done = self._orders
        while done < len(orders) and status.get(orders[done].client_id) in FINAL_STATUSES:
            done += 1
        _write_tables(self._conn, self._rows_up_to(events, status, done, len(events.fills), len(events.trades)),
                      self._key, self._submit)

    def finish(self, events: EngineEvents, order_status: Mapping[str, str], metrics: dict[str, Any],
               report: dict[str, Any] | None, model_versions: Sequence[ModelVersionRecord] = (),
               start_ts: int | None = None, end_ts: int | None = None) -> None:
        tables = chain([("model_versions", model_version_rows(self._run_id, model_versions))],
                       self._rows_up_to(events, order_status, len(events.orders), len(events.fills), len(events.trades)))
        _write_run(self._conn, self._run_id, tables, None, lambda: backtest_chunks(self._run_id, events),
                   backtest_results(events, metrics, report, start_ts, end_ts), self._submit, self._key)

    def _rows_up_to(self, events: EngineEvents, status: Mapping[str, str], orders: int, fills: int,
                    trades: int) -> Iterator[tuple[str, RowBatch]]:
        """Each table's rows from where the last write stopped up to the given counts, built as they are asked for."""
        o, f, t = self._orders, self._fills, self._trades
        self._orders, self._fills, self._trades = orders, fills, trades
        return activity_rows(self._run_id, events.orders[o:orders], status, events.fills[f:fills],
                             events.trades[t:trades], t, ())


def write_prepared(conn: Connection, prepared: PreparedRun) -> None:
    """Insert a prepared backtest inside the caller's transaction and mark its run completed."""
    _write_run(conn, prepared.run_id, prepared.tables, prepared.packed, lambda: prepared.chunks, prepared.results,
               _call)


def _write_run(conn: Connection, run_id: str, tables: Iterable[tuple[str, RowBatch]], packed: PackedRows | None,
               chunks: Callable[[], list[dict[str, Any]]], results: dict[str, Any],
               submit: Callable[..., None], key: int | None = None) -> None:
    """A finished backtest's writes, in order, each handed to ``submit(fn, *args)``; ``tables`` and
    ``chunks`` may be built lazily, between submissions. ``key``: the run's, when the caller has it."""
    key = _run_key(conn, run_id) if key is None else key
    _write_tables(conn, tables, key, submit)
    if packed is not None:
        submit(write_packed, conn, RunRow.metadata.tables, packed, {"run_key": key})
    submit(write_chunks, conn, chunks())
    submit(_mark_completed, conn, run_id, results)


def _write_tables(conn: Connection, tables: Iterable[tuple[str, RowBatch]], key: int | None,
                  submit: Callable[..., None]) -> None:
    """Each non-empty table's rows, in order, handed to ``submit``."""
    for name, batch in tables:
        if len(batch):
            submit(_write_run_rows, conn, name, batch, key)


def _call(fn: Callable[..., None], *args: Any) -> None:
    fn(*args)


def _mark_completed(conn: Connection, run_id: str, results: dict[str, Any]) -> None:
    conn.execute(update(RunRow).where(RunRow.id == run_id).values(**results, updated_at=utc_now_iso()))


def load_series(engine: Engine, run_id: str, group: str, columns: tuple[str, ...] | None = None) -> SeriesFrame:
    """A run's ``equity`` or ``signals`` series (chunks + live tail) as exact arrays; ``columns``: only those."""
    with engine.connect() as conn:
        return read_group(conn, run_id, group, columns)


def next_run_key(dialect: str) -> Any:
    """What an INSERT into ``runs`` puts in ``key``: PostgreSQL's sequence numbers it (None here);
    on SQLite the statement takes max + 1 itself, atomic because SQLite writes one transaction at a time."""
    if dialect == "postgresql":
        return None
    return select(func.coalesce(func.max(RunRow.key), 0) + 1).scalar_subquery()


def new_run_row(spec: RunSpec, status: str = "running", error: str | None = None,
                run_id: str | None = None, *, dialect: str) -> RunRow:
    """An unsaved run row for ``spec`` (create_run commits one at once; a sweep adds it to its own transaction).

    URLs in the data source, parameters and error are masked (no credentials); non-finite numbers become null.
    """
    now = utc_now_iso()
    row = RunRow(id=run_id or new_run_id(), name=spec.name, mode=spec.mode, strategy=spec.strategy,
                 engine=spec.engine, params=jsonable(mask_secrets(spec.params)), symbol=spec.symbol,
                 exchange=spec.exchange, timeframe=spec.timeframe,
                 data_source=mask_text(spec.data_source) if spec.data_source else spec.data_source,
                 data_hash=spec.data_hash, code_version=code_version(), status=status,
                 error=mask_text(error) if error else error, created_at=now, updated_at=now,
                 trade_from_ts=spec.trade_from_ts, initial_cash=spec.initial_cash, bars_processed=0)
    key = next_run_key(dialect)
    if key is not None:  # left unset on PostgreSQL, where the sequence numbers it
        row.key = key
    return row


def load_run_columns(engine: Engine, run_id: str) -> dict[str, np.ndarray]:
    """A run's per-bar marks as columns: ts, cash, position, close, equity (time order)."""
    frame = load_series(engine, run_id, "equity")
    names = ("ts", "cash", "position", "close", "equity")
    if not len(frame.values):
        return {n: np.zeros(0, dtype=np.int64 if n == "ts" else float) for n in names}
    return {n: frame.column(n) for n in names}


def load_trades(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    """A run's closed round trips as stored rows (in order)."""
    t = TradeRow
    with Session(engine) as session:
        rows = session.execute(select(t.seq, t.side, t.qty, t.entry_ts, t.exit_ts, t.entry_price, t.exit_price,
                                      t.gross_pnl, t.fees, t.pnl, t.return_pct, t.exit_reason, t.bars_held)
                               .where(t.run_key == run_key_of(run_id)).order_by(t.seq)).all()
    return [dict(r._mapping) for r in rows]


def find_run(engine: Engine, ref: str) -> RunRow | None:
    """A run by id, name, or unique id prefix."""
    with Session(engine) as session:
        row = session.get(RunRow, ref) or session.scalar(select(RunRow).where(RunRow.name == ref))
        if row is None and ref and all(c in "0123456789abcdef" for c in ref.lower()):
            found = session.scalars(select(RunRow).where(RunRow.id.startswith(ref.lower())).limit(2)).all()
            row = found[0] if len(found) == 1 else None
        return row


def load_equity(engine: Engine, run_id: str) -> tuple[np.ndarray, np.ndarray]:
    """A run's equity marks (bar open time ms, equity) in time order."""
    frame = load_series(engine, run_id, "equity", ("ts", "equity"))
    return frame.column("ts"), frame.column("equity")


@dataclass
class BarCommit:
    """Everything one closed bar changed in a paper run."""

    bar: Bar
    orders: list[Order]
    status_changes: dict[str, str]
    fills: list[Fill]
    trades: list[Trade]
    trade_seq_start: int
    equity: dict[str, float] | None
    signals: list[SignalPoint]
    model_versions: list[ModelVersionRecord] = field(default_factory=list)


def commit_bars(engine: Engine, run_id: str, changes: Sequence[BarCommit], *,
                lease_token: str | None = None) -> None:
    """Several consecutive bars in one transaction (used for warm-up bars, which place no orders).

    With ``lease_token`` the transaction first checks that this process still owns the run
    (and renews its heartbeat); if not, :class:`store.lease.LeaseLost` and nothing is written.
    The equity and signal rows go to the live tail; a tail that reached
    ``store.series.TAIL_COMPACT_ROWS`` is compacted into a chunk in this same transaction.
    """
    if not changes:
        return
    with Session(engine) as session, session.begin():
        if lease_token is not None:
            verify_and_renew(session, run_id, lease_token)
        conn = session.connection()  # Core writes inside the session's transaction
        for change in changes:
            _write_bar_change(conn, run_id, change)
        last = changes[-1].bar.ts_ms
        conn.execute(update(RunRow).where(RunRow.id == run_id).values(
            last_bar_ts=last, end_ts=last, updated_at=utc_now_iso(),
            bars_processed=RunRow.bars_processed + len(changes)))
        conn.execute(update(RunRow).where(RunRow.id == run_id, RunRow.start_ts.is_(None))
                     .values(start_ts=changes[0].bar.ts_ms))
        for group in GROUPS:
            compact_tail(conn, run_id, group)


def _write_bar_change(conn: Connection, run_id: str, change: BarCommit) -> None:
    _insert_model_versions(conn, run_id, change.model_versions)
    b = change.bar
    conn.execute(insert(BarRow), [{"run_id": run_id, "ts": b.ts_ms, "open": b.open, "high": b.high,
                                   "low": b.low, "close": b.close, "volume": b.volume}])
    _insert_activity(conn, run_id, change.orders, change.status_changes, change.fills, change.trades,
                     change.trade_seq_start, change.signals)
    new_ids = {o.client_id for o in change.orders}
    for client_id, status in change.status_changes.items():
        if client_id not in new_ids:  # an order from an earlier bar filled or was cancelled now
            conn.execute(update(OrderRow).where(OrderRow.run_key == run_key_of(run_id), OrderRow.client_id == client_id)
                         .values(status=status))
    if change.equity is not None:
        conn.execute(insert(EquityRow), [{"run_id": run_id, **change.equity}])


def last_stored_state(engine: Engine, run_id: str) -> dict[str, tuple | None]:
    """The newest equity row (ts, cash, position, equity) and fill (ts, qty, price, fee) of a run."""
    with engine.connect() as conn:
        eq = conn.execute(select(EquityRow.ts, EquityRow.cash, EquityRow.position, EquityRow.equity)
                          .where(EquityRow.run_id == run_id).order_by(EquityRow.ts.desc()).limit(1)).first()
        if eq is None:
            names = ["ts", "cash", "position", "equity"]
            chunked = last_chunked_values(conn, run_id, "equity", names)
            eq = tuple(chunked[n] for n in names) if chunked else None
        fill = conn.execute(select(FillRow.ts, FillRow.qty, FillRow.price, FillRow.fee)
                            .where(FillRow.run_key == run_key_of(run_id)).order_by(FillRow.id.desc()).limit(1)).first()
    return {"equity": tuple(eq) if eq else None, "fill": tuple(fill) if fill else None}


def stored_fold_indexes(engine: Engine, run_id: str) -> set[int]:
    with Session(engine) as session:
        return set(session.scalars(select(ModelVersionRow.fold_index).where(ModelVersionRow.run_id == run_id)))


def load_model_versions(engine: Engine, run_id: str) -> list[ModelVersionRow]:
    with Session(engine) as session:
        return list(session.scalars(select(ModelVersionRow).where(ModelVersionRow.run_id == run_id)
                                    .order_by(ModelVersionRow.fold_index)))


def load_run_bars(engine: Engine, run_id: str) -> list[Bar]:
    with Session(engine) as session:
        rows = session.execute(select(BarRow.ts, BarRow.open, BarRow.high, BarRow.low, BarRow.close,
                                      BarRow.volume).where(BarRow.run_id == run_id).order_by(BarRow.ts)).all()
    return [Bar(*row) for row in rows]


def count_rows(engine: Engine, run_id: str) -> dict[str, int]:
    """Row counts per table for one run (used by restart checks and tests)."""
    out = {}
    with engine.connect() as conn:
        for name, table in (("orders", OrderRow), ("fills", FillRow), ("trades", TradeRow),
                            ("equity", None), ("signals", None), ("bars", BarRow),
                            ("model_versions", ModelVersionRow)):
            if table is None:  # per-bar series: chunked values + live tail rows
                out[name] = stored_length(conn, run_id, name)
            else:
                out[name] = conn.scalar(select(func.count()).select_from(table).where(of_run(table, run_id))) or 0
    return out


def update_run_results(engine: Engine, run_id: str, metrics: dict[str, Any] | None = None,
                       report: dict[str, Any] | None = None, status: str | None = None, *,
                       lease_token: str | None = None) -> None:
    values: dict[str, Any] = {"updated_at": utc_now_iso()}
    if metrics is not None:
        values["metrics"] = jsonable(metrics)
    if report is not None:
        values["report"] = jsonable(report)
    if status is not None:
        values["status"] = status
    with Session(engine) as session, session.begin():
        if lease_token is not None:
            verify_and_renew(session, run_id, lease_token)
        session.execute(update(RunRow).where(RunRow.id == run_id).values(**values))


def _insert_activity(conn: Connection, run_id: str, orders: Sequence[Order], status: dict[str, str],
                     fills: Sequence[Fill], trades: Sequence[Trade], trade_seq_start: int,
                     signals: Sequence[SignalPoint]) -> None:
    """Orders (with their current status), fills, trades and signals: shared by backtests and paper bars."""
    key = _run_key(conn, run_id) if orders or fills or trades else None
    _write_tables(conn, activity_rows(run_id, orders, status, fills, trades, trade_seq_start, signals), key, _call)


def _write_run_rows(conn: Connection, table_name: str, batch: RowBatch, run_key: int | None) -> None:
    """A run's rows of one table: orders, fills and trades also get the run's key (KEYED_TABLES)."""
    keyed = batch.with_shared("run_key", run_key) if table_name in KEYED_TABLES else batch
    write_batch(conn, RunRow.metadata.tables[table_name], keyed)


def _run_key(conn: Connection, run_id: str) -> int:
    key = conn.scalar(select(RunRow.key).where(RunRow.id == run_id))
    if key is None:
        raise StoreError(f"run {run_id} has no key (not stored, or written before its upgrade finished)")
    return int(key)


def _insert_model_versions(conn: Connection, run_id: str, records: Sequence[ModelVersionRecord]) -> None:
    write_batch(conn, ModelVersionRow.__table__, model_version_rows(run_id, records))


