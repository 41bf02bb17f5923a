"""SQLAlchemy 2.0 typed rows for the DESIGN.md schema. Rows, not domain objects (STYLE.md §9).

Timestamps of market events are int ms UTC (bar open times) like everywhere else;
wall-clock audit columns are ISO-8601 strings in UTC.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import (JSON, BigInteger, Float, ForeignKey, Index, Integer, LargeBinary, Sequence, String, Text,
                        UniqueConstraint, select)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from store.rows import KEYED_TABLES

SCHEMA_VERSION = 1  # the pre-Alembic marker in ``meta``; schema revisions are Alembic's (store/migrations)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}


class Meta(Base):
    """Key/value facts about the database itself (the schema version)."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# The bulk tables' references to their run. On PostgreSQL they are checked per statement by triggers
# (store/migrations/versions/0006_statement_checked_refs.py), not by these foreign keys: a key's
# per-row check was ~45 % of the server's time to take a 1M-bar run's rows. Same guarantees; SQLite
# keeps the foreign keys.
STATEMENT_CHECKED_REFS = {"orders": "run_key", "fills": "run_key", "trades": "run_key",
                          "series_chunks": "run_id"}

RUN_KEY_SEQUENCE = Sequence("runs_key_seq")  # PostgreSQL numbers runs; on SQLite the insert does (store.repository.run_key_value)


class RunRow(Base):
    """A run. ``id`` is its public name (hex); ``key`` a small integer that the bulk tables
    (orders, fills, trades) refer to instead, so their rows and indexes stay small. ``key``
    is nullable only because SQLite cannot add a NOT NULL column without rebuilding ``runs``;
    every insert sets it."""

    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_key", "key", unique=True),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[int | None] = mapped_column(Integer, RUN_KEY_SEQUENCE)
    name: Mapped[str | None] = mapped_column(String(200), unique=True)
    mode: Mapped[str] = mapped_column(String(16))  # backtest | paper
    strategy: Mapped[str] = mapped_column(String(64))
    engine: Mapped[str] = mapped_column(String(32), default="native")
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    symbol: Mapped[str | None] = mapped_column(String(64))
    exchange: Mapped[str | None] = mapped_column(String(64))
    timeframe: Mapped[str | None] = mapped_column(String(16))
    data_source: Mapped[str | None] = mapped_column(Text)
    data_hash: Mapped[str | None] = mapped_column(String(64))
    code_version: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # running | completed | failed | stopped
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(40))
    updated_at: Mapped[str] = mapped_column(String(40))
    start_ts: Mapped[int | None] = mapped_column(BigInteger)
    end_ts: Mapped[int | None] = mapped_column(BigInteger)
    trade_from_ts: Mapped[int | None] = mapped_column(BigInteger)
    last_bar_ts: Mapped[int | None] = mapped_column(BigInteger)
    bars_processed: Mapped[int] = mapped_column(Integer, default=0)
    initial_cash: Mapped[float] = mapped_column(Float)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ModelVersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("run_id", "fold_index"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    fold_index: Mapped[int] = mapped_column(Integer)
    train_start_ts: Mapped[int] = mapped_column(BigInteger)
    train_end_ts: Mapped[int] = mapped_column(BigInteger)
    trade_start_ts: Mapped[int | None] = mapped_column(BigInteger)
    trade_end_ts: Mapped[int | None] = mapped_column(BigInteger)
    objective: Mapped[str] = mapped_column(String(16))
    seed: Mapped[int] = mapped_column(Integer)
    threshold: Mapped[float | None] = mapped_column(Float)
    train_loss: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    steps: Mapped[int | None] = mapped_column(Integer)
    train_seconds: Mapped[float | None] = mapped_column(Float)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    losses: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    sample_check: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    checkpoint: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[str] = mapped_column(String(40))


class OrderRow(Base):
    __tablename__ = "orders"
    __table_args__ = (UniqueConstraint("run_key", "client_id", name="uq_orders_run_key_client_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_key: Mapped[int] = mapped_column(ForeignKey("runs.key", ondelete="CASCADE"))  # the unique key indexes it
    client_id: Mapped[str] = mapped_column(String(64))
    ts: Mapped[int] = mapped_column(BigInteger)  # open time of the bar at whose close it was decided
    type: Mapped[str] = mapped_column(String(16))
    side: Mapped[str | None] = mapped_column(String(8))
    qty: Mapped[float | None] = mapped_column(Float)
    target_fraction: Mapped[float | None] = mapped_column(Float)
    price: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    signal: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    model_version: Mapped[int | None] = mapped_column(Integer)  # fold index of the model behind it


class FillRow(Base):
    __tablename__ = "fills"
    __table_args__ = (Index("ix_fills_run_key_ts", "run_key", "ts"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_key: Mapped[int] = mapped_column(ForeignKey("runs.key", ondelete="CASCADE"))
    order_client_id: Mapped[str] = mapped_column(String(64))
    ts: Mapped[int] = mapped_column(BigInteger)
    side: Mapped[str] = mapped_column(String(8))
    qty: Mapped[float] = mapped_column(Float)
    price: Mapped[float] = mapped_column(Float)
    fee: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(32))


class TradeRow(Base):
    __tablename__ = "trades"
    __table_args__ = (UniqueConstraint("run_key", "seq", name="uq_trades_run_key_seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_key: Mapped[int] = mapped_column(ForeignKey("runs.key", ondelete="CASCADE"))  # the unique key indexes it
    seq: Mapped[int] = mapped_column(Integer)
    side: Mapped[str] = mapped_column(String(8))
    qty: Mapped[float] = mapped_column(Float)
    entry_ts: Mapped[int] = mapped_column(BigInteger)
    exit_ts: Mapped[int] = mapped_column(BigInteger)
    entry_price: Mapped[float] = mapped_column(Float)
    exit_price: Mapped[float] = mapped_column(Float)
    gross_pnl: Mapped[float] = mapped_column(Float)
    fees: Mapped[float] = mapped_column(Float)
    pnl: Mapped[float] = mapped_column(Float)
    return_pct: Mapped[float] = mapped_column(Float)
    exit_reason: Mapped[str] = mapped_column(String(32))
    bars_held: Mapped[int] = mapped_column(Integer)


class SeriesChunkRow(Base):
    """One chunk of one per-bar column of a run (store/series.py): exact floats, compressed.

    ``series`` is ``<group>.<column>`` (e.g. ``equity.cash``, ``signals.signal``); chunks
    of a column are numbered from 0 and cover ``first_ts``..``last_ts`` (bar open times).
    """

    __tablename__ = "series_chunks"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    series: Mapped[str] = mapped_column(String(48), primary_key=True)
    chunk_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_ts: Mapped[int] = mapped_column(BigInteger)
    last_ts: Mapped[int] = mapped_column(BigInteger)
    n: Mapped[int] = mapped_column(Integer)
    dtype: Mapped[str] = mapped_column(String(8))
    encoding: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    nulls: Mapped[bytes | None] = mapped_column(LargeBinary)


class EquityRow(Base):
    """Live tail of a paper run's equity series: one row per candle until compacted into chunks."""

    __tablename__ = "equity"
    __table_args__ = (UniqueConstraint("run_id", "ts"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    ts: Mapped[int] = mapped_column(BigInteger)
    cash: Mapped[float] = mapped_column(Float)
    position: Mapped[float] = mapped_column(Float)
    close: Mapped[float] = mapped_column(Float)
    equity: Mapped[float] = mapped_column(Float)


class SignalRow(Base):
    """Live tail of a paper run's signal series (see :class:`EquityRow`)."""

    __tablename__ = "signals"
    __table_args__ = (UniqueConstraint("run_id", "ts"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    ts: Mapped[int] = mapped_column(BigInteger)
    signal: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    unusualness: Mapped[float | None] = mapped_column(Float)
    model_version: Mapped[int | None] = mapped_column(Integer)


class BarRow(Base):
    """Candles a paper run consumed, so a restart can replay them exactly."""

    __tablename__ = "bars"
    __table_args__ = (UniqueConstraint("run_id", "ts"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    ts: Mapped[int] = mapped_column(BigInteger)
    open: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    low: Mapped[float] = mapped_column(Float)
    close: Mapped[float] = mapped_column(Float)
    volume: Mapped[float] = mapped_column(Float)


class RunLeaseRow(Base):
    """Which process drives a paper run now (one row per leased run; store/lease.py).

    Taken by a compare-and-swap INSERT/UPDATE, renewed by a heartbeat and by every bar
    commit, deleted on a clean stop. Times are the owner's wall clock, ms UTC.
    """

    __tablename__ = "run_leases"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    owner_token: Mapped[str] = mapped_column(String(32))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    acquired_at_ms: Mapped[int] = mapped_column(BigInteger)
    heartbeat_at_ms: Mapped[int] = mapped_column(BigInteger)


class SweepRow(Base):
    """A named sweep: many runs of one strategy over a grid or a search, data files and seeds."""

    __tablename__ = "sweeps"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    strategy: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)  # grid or search space, data files, seeds, split
    status: Mapped[str] = mapped_column(String(16))  # running | completed | interrupted
    created_at: Mapped[str] = mapped_column(String(40))
    updated_at: Mapped[str] = mapped_column(String(40))
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # best run, DSR, PBO, held-out result


class SweepRunRow(Base):
    """Links a run to its sweep. ``config_hash`` (full resolved configuration + data content hash) is
    unique per sweep and role, so a resumed sweep stores every configuration exactly once."""

    __tablename__ = "sweep_runs"
    __table_args__ = (UniqueConstraint("sweep_id", "role", "config_hash"),)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    sweep_id: Mapped[str] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # trial (a configuration tried) | holdout (best, after --select-until)
    config_hash: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the swept values (strategy + broker)
    data_path: Mapped[str] = mapped_column(Text)
    data_hash: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int | None] = mapped_column(Integer)


# ---- which rows belong to a run ----------------------------------------------------------------
# (here, beside the tables, so that readers need not import the repository and all it writes with;
# KEYED_TABLES, the tables whose rows refer to runs.key, not runs.id, is defined with the rows)


def run_key_of(run_id: str) -> Any:
    """The run's integer key as a scalar subquery, for WHERE clauses on orders, fills and trades."""
    return select(RunRow.key).where(RunRow.id == run_id).scalar_subquery()


def of_run(table: Any, run_id: str) -> Any:
    """WHERE clause selecting one run's rows of ``table`` (by key for orders/fills/trades, else by id)."""
    if table.__tablename__ in KEYED_TABLES:
        return table.run_key == run_key_of(run_id)
    return table.run_id == run_id
