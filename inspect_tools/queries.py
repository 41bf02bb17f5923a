"""Read-only queries over one consistent snapshot of the store.

``open_reader(db)`` opens the database with ``store.db.init_db(read_only=True)``
(SQLite ``mode=ro``: the inspector can never write to, or lock, a live paper
run's file) and starts one read transaction, so every query of a command sees
the same committed bars even while a writer commits more (WAL readers never
block the writer). Rows come back as plain dicts of stored values: no pandas
conversion, so ints stay ints and missing values stay None.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
from sqlalchemy import Connection, Result, Select, case, func, inspect, literal_column, select
from sqlalchemy.exc import SQLAlchemyError

from domain.redact import mask_secrets, mask_text
from engine.metrics import drawdown
from inspect_tools.errors import InspectError
from domain.times import TimeRange
from store.db import StoreError, init_db
from store.schema import (BarRow, EquityRow, FillRow, ModelVersionRow, OrderRow, RunLeaseRow, RunRow, SweepRow,
                          SweepRunRow, TradeRow, of_run)
from store.series import SeriesFrame, last_chunked_values, read_group, stored_length

Row = dict[str, Any]
# who drives a run (its lease): what inspect_tools.summary.interruption reads
_OWNER_COLUMNS = (RunLeaseRow.host.label("owner_host"), RunLeaseRow.pid.label("owner_pid"),
                  RunLeaseRow.heartbeat_at_ms.label("owner_heartbeat_ms"))
_HEX = set("0123456789abcdef")
_MAX_CANDIDATES = 10


@contextmanager
def open_reader(db: str) -> Iterator["StoreReader"]:
    """Yield a reader on one read-only snapshot of ``db`` (URL or file path)."""
    path = db.split(":///", 1)[1] if db.startswith("sqlite:///") else (db if "://" not in db else "")
    if path and os.path.isdir(path):
        raise StoreError(f"{path} is a directory, not a database file")
    try:
        engine = init_db(db, read_only=True)
    except StoreError as exc:
        raise StoreError(_hide_password(str(exc))) from None
    except SQLAlchemyError as exc:  # e.g. a server URL that cannot be reached
        raise StoreError(_hide_password(f"cannot open {db}: {str(exc).splitlines()[0]}")) from None
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN")  # one WAL snapshot for all queries; never committed
            elif conn.dialect.name in ("postgresql", "mysql", "mariadb"):
                conn = conn.execution_options(isolation_level="REPEATABLE READ")  # their snapshot level
            yield StoreReader(conn)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class TradeFilter:
    """Which trades to show. Times select on the entry (fill) time."""

    when: TimeRange = TimeRange()
    side: str | None = None  # long | short
    min_pnl: float | None = None  # net P&L in quote currency, inclusive
    max_pnl: float | None = None
    reasons: tuple[str, ...] = ()  # exit reasons


@dataclass(frozen=True)
class TradeColumns:
    """Closed trades as one tuple of stored values per field (``seq``, ``side``, ..., in ``seq`` order).

    A 1M-bar run has ~50k trades: the report draws every one and lists the first few thousand,
    a column at a time, so it needs no dict per trade.
    """

    columns: dict[str, tuple[Any, ...]]

    def __len__(self) -> int:
        return len(self.columns["seq"])


@dataclass(frozen=True)
class OrderFilter:
    """Which orders to show. Times select on the decision bar's open time."""

    when: TimeRange = TimeRange()
    side: str | None = None  # buy | sell (the order's side, or its fill's when sized at fill)
    reasons: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()


class StoreReader:
    """All the inspector's SQL, one method per question. Holds only the connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._tables = set(inspect(conn).get_table_names())

    def has_table(self, name: str) -> bool:
        """Tables added after a DB was made (schema v1 allows that) may be missing in old files."""
        return name in self._tables

    # ---- runs ------------------------------------------------------------------------------
    def runs(self, *, mode: str | None = None, strategy: str | None = None,
             status: str | None = None) -> list[Row]:
        """Every run, newest first, with its trade count and last marked equity."""
        trades = (select(func.count()).select_from(TradeRow).where(TradeRow.run_key == RunRow.key)
                  .scalar_subquery())
        # the live tail's newest row; runs whose equity is all in chunks are filled in below
        last_equity = (select(EquityRow.equity).where(EquityRow.run_id == RunRow.id)
                       .order_by(EquityRow.ts.desc()).limit(1).scalar_subquery())
        query = select(RunRow.id, RunRow.name, RunRow.mode, RunRow.strategy, RunRow.engine, RunRow.symbol,
                       RunRow.exchange, RunRow.timeframe, RunRow.status, RunRow.error, RunRow.start_ts,
                       RunRow.end_ts, RunRow.last_bar_ts, RunRow.initial_cash, RunRow.metrics, RunRow.created_at,
                       trades.label("trade_rows"), last_equity.label("last_equity"), *_OWNER_COLUMNS,
                       ).outerjoin(RunLeaseRow, RunLeaseRow.run_id == RunRow.id)
        if mode:
            query = query.where(RunRow.mode == mode)
        if strategy:
            query = query.where(RunRow.strategy == strategy)
        if status:
            query = query.where(RunRow.status == status)
        # created_at has 1 s resolution; SQLite's rowid keeps insertion order within a second.
        tiebreak = literal_column("runs.rowid").desc() if self.conn.dialect.name == "sqlite" else RunRow.id
        query = query.order_by(RunRow.created_at.desc(), tiebreak)
        rows = [row._asdict() for row in self.conn.execute(query)]
        for row in rows:
            if row["last_equity"] is None and not row["metrics"]:  # listed by last equity only without metrics
                chunked = last_chunked_values(self.conn, row["id"], "equity", ["equity"])
                row["last_equity"] = chunked["equity"] if chunked else None
        return rows

    def owner(self, run_id: str) -> Row | None:
        """The process recorded as driving the run (host, pid, heartbeat), if any."""
        row = self.conn.execute(select(*_OWNER_COLUMNS).where(RunLeaseRow.run_id == run_id)).first()
        return None if row is None else row._asdict()

    def run(self, run_id: str) -> Row:
        row = self.conn.execute(select(RunRow.__table__).where(RunRow.id == run_id)).first()
        if row is None:
            raise InspectError(f"run {run_id} not found")
        # Runs stored before URLs were masked may still hold credentials: never show them.
        return mask_secrets(row._asdict())

    def resolve(self, ref: str) -> Row:
        """A run by exact id, exact name, or unique id prefix (case-insensitive hex)."""
        text = ref.strip()
        if not text:
            raise InspectError("empty run reference")
        table = RunRow.__table__
        for column in (RunRow.id, RunRow.name):
            row = self.conn.execute(select(table).where(column == text)).first()
            if row is not None:
                return mask_secrets(row._asdict())
        prefix = text.lower()
        matches: list[Row] = []
        if set(prefix) <= _HEX:
            matches = [r._asdict() for r in self.conn.execute(
                select(RunRow.id, RunRow.name, RunRow.strategy, RunRow.created_at)
                .where(RunRow.id.startswith(prefix, autoescape=True)).order_by(RunRow.created_at)
                .limit(_MAX_CANDIDATES + 1))]
        if not matches:
            raise InspectError(f"no run has the id, id prefix or name {text!r} "
                               "(list them with: inspect_trades.py runs)")
        if len(matches) > 1:
            shown = ", ".join(_candidate(m) for m in matches[:_MAX_CANDIDATES])
            more = " and more" if len(matches) > _MAX_CANDIDATES else ""
            raise InspectError(f"run id prefix {text!r} is ambiguous; it matches {shown}{more}. "
                               "Give more characters or the run name")
        return self.run(matches[0]["id"])

    # ---- sweeps --------------------------------------------------------------------------------
    def sweeps(self) -> list[Row]:
        """Every sweep, newest first, with its counts of completed and failed runs."""
        if not self.has_table("sweeps"):
            return []
        counts = (select(SweepRunRow.sweep_id, RunRow.status, func.count().label("n"))
                  .join(RunRow, RunRow.id == SweepRunRow.run_id).where(SweepRunRow.role == "trial")
                  .group_by(SweepRunRow.sweep_id, RunRow.status))
        per: dict[str, dict[str, int]] = {}
        for sweep_id, status, n in self.conn.execute(counts):
            per.setdefault(sweep_id, {})[status] = n
        rows = [r._asdict() for r in self.conn.execute(select(SweepRow.__table__)
                                                       .order_by(SweepRow.created_at.desc(), SweepRow.name))]
        for r in rows:
            c = per.get(r["id"], {})
            r["completed"], r["failed"] = c.get("completed", 0), c.get("failed", 0)
        return rows

    def sweep(self, ref: str) -> Row | None:
        """A sweep by exact name or id (None when there is none)."""
        if not self.has_table("sweeps"):
            return None
        for column in (SweepRow.name, SweepRow.id):
            row = self.conn.execute(select(SweepRow.__table__).where(column == ref.strip())).first()
            if row is not None:
                return row._asdict()
        return None

    def sweep_runs(self, sweep_id: str, role: str | None = "trial") -> list[Row]:
        """The sweep's runs: link fields (swept params, data, seed), status, error and metrics."""
        query = (select(RunRow.id, RunRow.status, RunRow.error, RunRow.metrics, RunRow.timeframe,
                        RunRow.initial_cash, RunRow.created_at, SweepRunRow.role, SweepRunRow.params,
                        SweepRunRow.data_path, SweepRunRow.seed, SweepRunRow.config_hash)
                 .join(SweepRunRow, SweepRunRow.run_id == RunRow.id).where(SweepRunRow.sweep_id == sweep_id))
        if role is not None:
            query = query.where(SweepRunRow.role == role)
        return [r._asdict() for r in self.conn.execute(query.order_by(RunRow.created_at, RunRow.id))]

    # ---- per-run tables ----------------------------------------------------------------------
    def trades(self, run_id: str, flt: TradeFilter = TradeFilter()) -> list[Row]:
        return _dicts(self.conn.execute(_trade_query(run_id, flt)))

    def trade_columns(self, run_id: str, flt: TradeFilter = TradeFilter()) -> TradeColumns:
        """The same trades as :meth:`trades`, one tuple per field: for callers that use every trade
        but few fields (the report's markers), without a dict per trade."""
        result = self.conn.execute(_trade_query(run_id, flt))
        names = tuple(result.keys())
        rows = result.all()
        return TradeColumns(dict(zip(names, zip(*rows) if rows else [() for _ in names])))

    def equity(self, run_id: str, when: TimeRange = TimeRange(), initial_cash: float | None = None) -> list[Row]:
        """Equity rows with their drawdown from the running peak since the run began.

        The peak starts at ``initial_cash`` (as in ``engine.metrics``), and is taken over
        the whole curve before ``when`` is applied, so a window shows true drawdowns.
        """
        frame = self.equity_series(run_id)
        if not len(frame):
            return []
        values = dict(frame.values)
        values["drawdown"] = drawdown(values["equity"], initial_cash)
        keep = _time_mask(when, values["ts"])
        if not keep.all():
            values = {k: v[keep] for k, v in values.items()}
        return list(SeriesFrame(values, {}).rows())

    def equity_values(self, run_id: str, when: TimeRange = TimeRange(),
                      initial_cash: float | None = None) -> dict[str, np.ndarray]:
        """Like :meth:`equity` but as columns (ts, cash, position, close, equity, drawdown)."""
        values = dict(self.equity_series(run_id).values)
        values["drawdown"] = drawdown(values["equity"], initial_cash)
        keep = _time_mask(when, values["ts"])
        return values if keep.all() else {k: v[keep] for k, v in values.items()}

    def equity_series(self, run_id: str, columns: tuple[str, ...] | None = None) -> SeriesFrame:
        """The whole equity series as exact arrays (ts, cash, position, close, equity; or only ``columns``).

        Each column of a 1M-bar run is ~8 MB to decompress: a caller that draws two of them names them.
        """
        return read_group(self.conn, run_id, "equity", columns)

    def signal_series(self, run_id: str, columns: tuple[str, ...] | None = None) -> SeriesFrame:
        """The signal series (ts, signal, threshold, unusualness, model_version; or only ``columns``)."""
        return read_group(self.conn, run_id, "signals", columns)

    def orders(self, run_id: str, flt: OrderFilter = OrderFilter()) -> list[Row]:
        """Orders with the signal and threshold behind them and their (aggregated) fill."""
        f = FillRow
        fills = (select(f.order_client_id.label("client_id"), func.min(f.ts).label("fill_ts"),
                        func.min(f.side).label("fill_side"), func.sum(f.qty).label("fill_qty"),
                        case((func.count() == 1, func.min(f.price)),  # exact when one fill (the usual case)
                             else_=func.sum(f.qty * f.price) / func.sum(f.qty)).label("fill_price"),
                        func.sum(f.fee).label("fee"))
                 .where(of_run(f, run_id)).group_by(f.order_client_id).subquery())
        o = OrderRow
        query = (select(o.client_id, o.ts, o.type, o.side, o.qty, o.target_fraction, o.price, o.reason, o.status,
                        o.signal, o.threshold, o.model_version, fills.c.fill_ts, fills.c.fill_side,
                        fills.c.fill_qty, fills.c.fill_price, fills.c.fee)
                 .outerjoin(fills, fills.c.client_id == o.client_id).where(of_run(o, run_id)))
        if flt.when.start_ms is not None:
            query = query.where(o.ts >= flt.when.start_ms)
        if flt.when.end_ms is not None:
            query = query.where(o.ts < flt.when.end_ms)
        if flt.reasons:
            query = query.where(o.reason.in_(flt.reasons))
        if flt.statuses:
            query = query.where(o.status.in_(flt.statuses))
        rows = _dicts(self.conn.execute(query.order_by(o.ts, o.id)))
        if flt.side:
            rows = [r for r in rows if (r["side"] or r["fill_side"]) == flt.side]
        return rows

    def signals(self, run_id: str) -> list[Row]:
        return list(self.signal_series(run_id).rows())

    def bars(self, run_id: str) -> list[Row]:
        """Candles a paper run stored (backtests store none)."""
        if not self.has_table("bars"):
            return []
        b = BarRow
        query = select(b.ts, b.open, b.high, b.low, b.close, b.volume).where(b.run_id == run_id).order_by(b.ts)
        return [row._asdict() for row in self.conn.execute(query)]

    def counts(self, run_id: str) -> dict[str, int]:
        """Stored rows of each per-run table (a missing optional table counts 0)."""
        out = {}
        for name, table in (("orders", OrderRow), ("fills", FillRow), ("trades", TradeRow), ("equity", None),
                            ("signals", None), ("bars", BarRow), ("model_versions", ModelVersionRow)):
            if table is None:  # per-bar series: chunked values + live tail rows
                out[name] = stored_length(self.conn, run_id, name)
            else:
                out[name] = (self.conn.scalar(select(func.count()).select_from(table).where(of_run(table, run_id)))
                             if self.has_table(table.__tablename__) else 0) or 0
        return out

    def model_versions(self, run_id: str) -> list[Row]:
        """Per-fold models without their checkpoint blobs (only whether one is stored)."""
        if not self.has_table("model_versions"):
            return []
        m = ModelVersionRow
        query = (select(m.fold_index, m.train_start_ts, m.train_end_ts, m.trade_start_ts, m.trade_end_ts,
                        m.objective, m.seed, m.threshold, m.train_loss, m.val_loss, m.steps, m.train_seconds,
                        m.config, m.losses, m.sample_check, m.created_at,
                        (m.checkpoint.is_not(None)).label("has_checkpoint"))
                 .where(m.run_id == run_id).order_by(m.fold_index))
        return [{**row._asdict(), "has_checkpoint": bool(row.has_checkpoint)} for row in self.conn.execute(query)]


def _trade_query(run_id: str, flt: TradeFilter) -> Select:
    t = TradeRow
    query = select(t.seq, t.side, t.qty, t.entry_ts, t.exit_ts, t.entry_price, t.exit_price, t.gross_pnl,
                   t.fees, t.pnl, t.return_pct, t.exit_reason, t.bars_held).where(of_run(t, run_id))
    if flt.when.start_ms is not None:
        query = query.where(t.entry_ts >= flt.when.start_ms)
    if flt.when.end_ms is not None:
        query = query.where(t.entry_ts < flt.when.end_ms)
    if flt.side:
        query = query.where(t.side == flt.side)
    if flt.min_pnl is not None:
        query = query.where(t.pnl >= flt.min_pnl)
    if flt.max_pnl is not None:
        query = query.where(t.pnl <= flt.max_pnl)
    if flt.reasons:
        query = query.where(t.exit_reason.in_(flt.reasons))
    return query.order_by(t.seq)


def _dicts(result: Result[Any]) -> list[Row]:
    """Rows as plain dicts keyed by column label; ~2x faster than ``Row._asdict`` per row."""
    keys = tuple(result.keys())
    return [dict(zip(keys, row)) for row in result]


def _time_mask(when: TimeRange, ts_ms: np.ndarray) -> np.ndarray:
    """Vectorised ``when.contains`` over an int64 array of bar open times."""
    keep = np.ones(len(ts_ms), dtype=bool)
    if when.start_ms is not None:
        keep &= ts_ms >= when.start_ms
    if when.end_ms is not None:
        keep &= ts_ms < when.end_ms
    return keep


def _hide_password(message: str) -> str:
    """Never echo a database password (in a URL like postgresql://user:secret@host/db)."""
    return mask_text(message)


def _candidate(row: Row) -> str:
    name = f" ({row['name']})" if row.get("name") else ""
    return f"{row['id'][:12]}{name}"
