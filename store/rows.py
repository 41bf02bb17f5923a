"""A finished run as the rows the store inserts: built from domain objects, without a database.

Why apart from store/repository.py (which owns the transactions): a sweep worker builds
a finished run's rows and ships them to the driver, the only writer. This module, and
what it imports (store/batch.py, store/chunks.py), never imports SQLAlchemy, so a
worker process starts without it (~0.3 s less to start a local pool, and less memory
per worker). The repository writes the same rows for a backtest it saves itself and for
each closed bar of a paper run.
"""
from __future__ import annotations

import uuid
from array import array
from dataclasses import dataclass, replace
from itertools import chain, repeat
from operator import itemgetter
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from domain.events import EngineEvents
from domain.heap import gc_paused
from domain.records import ModelVersionRecord
from domain.strict_json import jsonable
from domain.types import Fill, Order, OrderType, Side, SignalPoint, Trade
from store.batch import PackedRows, RowBatch
from store.chunks import chunk_rows
from store.provenance import utc_now_iso

KEYED_TABLES = frozenset({"orders", "fills", "trades"})  # rows refer to runs.key, not runs.id


@dataclass
class PreparedRun:
    """A finished backtest as the rows one transaction writes, built without a connection.

    Why apart from writing: a sweep worker builds these (the CPU-heavy part: row tuples,
    compressed series chunks) and ships them; the driver, the only writer, just inserts them.
    Plain values only, so it pickles small and fast.
    """

    run_id: str
    tables: list[tuple[str, RowBatch]]  # (table name, its rows) in insert order
    chunks: list[dict[str, Any]]  # series_chunks rows
    results: dict[str, Any]  # the run row's final values (metrics, report, span, bar count)
    packed: PackedRows | None = None  # orders, fills and trades packed for a SQLite store (see packed_rows)

    def packed_rows(self) -> PreparedRun:
        """The same run with its orders, fills and trades as one SQLite image (store/batch.py
        PackedRows): built by a sweep worker when the store is SQLite, so the driver's insert is
        one INSERT … SELECT per table. Any store still takes it."""
        keyed = [(name, batch) for name, batch in self.tables if name in KEYED_TABLES]
        if self.packed is not None or not keyed:
            return self
        rest = [(name, batch) for name, batch in self.tables if name not in KEYED_TABLES]
        return replace(self, tables=rest, packed=PackedRows.pack(keyed))


def prepare_backtest(run_id: str, events: EngineEvents, order_status: dict[str, str], metrics: dict[str, Any],
                     report: dict[str, Any] | None, model_versions: Sequence[ModelVersionRecord] = (),
                     start_ts: int | None = None, end_ts: int | None = None, *,
                     with_orders: bool = True) -> PreparedRun:
    """A finished backtest's rows and series chunks, ready for :func:`write_prepared`. Without
    ``with_orders`` its orders and fills are left out (a sweep trial's default: judging and reporting a
    sweep read its metrics, trades and series)."""
    return PreparedRun(run_id, list(backtest_tables(run_id, events, order_status, model_versions, with_orders)),
                       backtest_chunks(run_id, events), backtest_results(events, metrics, report, start_ts, end_ts))


def backtest_tables(run_id: str, events: EngineEvents, order_status: dict[str, str],
                     model_versions: Sequence[ModelVersionRecord],
                     with_orders: bool = True) -> Iterator[tuple[str, RowBatch]]:
    """A backtest's SQL rows, one table at a time in insert order, empty tables left out."""
    orders, fills = (events.orders, events.fills) if with_orders else ((), ())
    tables = chain([("model_versions", model_version_rows(run_id, model_versions))],
                   activity_rows(run_id, orders, order_status, fills, events.trades, 0, ()))
    return ((name, batch) for name, batch in tables if len(batch))


def backtest_chunks(run_id: str, events: EngineEvents) -> list[dict[str, Any]]:
    """series_chunks rows of a backtest's equity and signal columns."""
    series = {"equity": equity_columns(events), "signals": events.signals.columns() if len(events.signals) else None}
    return [row for group, cols in series.items() if cols is not None for row in chunk_rows(run_id, group, cols)]


def backtest_results(events: EngineEvents, metrics: dict[str, Any], report: dict[str, Any] | None,
                      start_ts: int | None, end_ts: int | None) -> dict[str, Any]:
    """The run row's final values."""
    return {"status": "completed", "metrics": jsonable(metrics), "report": jsonable(report),
            "start_ts": start_ts, "end_ts": end_ts, "last_bar_ts": end_ts,
            "bars_processed": len(events.equity_ts_ms)}


def equity_columns(ev: EngineEvents) -> dict[str, tuple[np.ndarray, None]] | None:
    """The engine's equity columns as arrays (never missing values); typed arrays are viewed, not copied."""
    if not len(ev.equity_ts_ms):
        return None

    def view(column: Any, dtype: Any) -> np.ndarray:
        if isinstance(column, array) and column.typecode == {np.int64: "q", np.float64: "d"}[dtype]:
            return np.frombuffer(column, dtype=dtype)
        return np.asarray(column, dtype=dtype)

    return {"ts": (view(ev.equity_ts_ms, np.int64), None), "cash": (view(ev.equity_cash, np.float64), None),
            "position": (view(ev.equity_position, np.float64), None),
            "close": (view(ev.equity_close, np.float64), None), "equity": (view(ev.equity_quote, np.float64), None)}


def new_run_id() -> str:
    return uuid.uuid4().hex


# Enum member (or None) → its stored text, looked up per row with a C-level dict.get.
_TEXT = {None: None, **{m: m.value for m in (*OrderType, *Side)}}


def _fields(records: Sequence[tuple], kind: type, names: Sequence[str]) -> dict[str, list]:
    """The named fields of NamedTuple records of ``kind``, one list each (a C-level pass per field,
    no per-row Python; ~40 % faster than transposing every field with ``zip(*records)``)."""
    return {name: list(map(itemgetter(kind._fields.index(name)), records)) for name in names}


def order_rows(orders: Sequence[Order], status: Mapping[str, str]) -> RowBatch:
    """orders rows without their run (written with the run's key, see :func:`_write_run_rows`)."""
    f = _fields(orders, Order, ("client_id", "created_ts_ms", "type", "side", "qty", "target_fraction", "price",
                                "reason", "signal", "threshold", "model_version"))
    ids = f["client_id"]
    columns = {"client_id": ids, "ts": f["created_ts_ms"], "type": list(map(_TEXT.get, f["type"])),
               "side": list(map(_TEXT.get, f["side"])), "qty": f["qty"], "target_fraction": f["target_fraction"],
               "price": f["price"], "reason": f["reason"],
               "status": list(map(status.get, ids, repeat("submitted", len(ids)))),
               "signal": f["signal"], "threshold": f["threshold"], "model_version": f["model_version"]}
    return RowBatch.from_columns(columns, floats=("qty", "target_fraction", "price", "signal", "threshold"))


def fill_rows(fills: Sequence[Fill]) -> RowBatch:
    f = _fields(fills, Fill, ("order_id", "ts_ms", "side", "qty", "price", "fee_quote", "reason"))
    columns = {"order_client_id": f["order_id"], "ts": f["ts_ms"], "side": list(map(_TEXT.get, f["side"])),
               "qty": f["qty"], "price": f["price"], "fee": f["fee_quote"], "reason": f["reason"]}
    return RowBatch.from_columns(columns, floats=("qty", "price", "fee"))


def trade_rows(trades: Sequence[Trade], seq_start: int) -> RowBatch:
    f = _fields(trades, Trade, Trade._fields)
    columns = {"seq": list(range(seq_start, seq_start + len(trades))), "side": f["side"], "qty": f["qty"],
               "entry_ts": f["entry_ts_ms"], "exit_ts": f["exit_ts_ms"], "entry_price": f["entry_price"],
               "exit_price": f["exit_price"], "gross_pnl": f["gross_pnl_quote"], "fees": f["fees_quote"],
               "pnl": f["pnl_quote"], "return_pct": f["return_pct"], "exit_reason": f["exit_reason"],
               "bars_held": f["bars_held"]}
    return RowBatch.from_columns(columns, floats=("qty", "entry_price", "exit_price", "gross_pnl", "fees", "pnl",
                                                  "return_pct"))


def signal_rows(run_id: str, signals: Sequence[SignalPoint]) -> RowBatch:
    """Rows of the live signal tail (paper runs; a backtest stores its signals as chunks)."""
    f = _fields(signals, SignalPoint, SignalPoint._fields)
    columns = {"run_id": [run_id] * len(signals), "ts": f["ts_ms"], "signal": f["signal"],
               "threshold": f["threshold"], "unusualness": f["unusualness"], "model_version": f["model_version"]}
    return RowBatch.from_columns(columns, floats=("signal", "threshold", "unusualness"))


def activity_rows(run_id: str, orders: Sequence[Order], status: Mapping[str, str], fills: Sequence[Fill],
                   trades: Sequence[Trade], trade_seq_start: int,
                   signals: Sequence[SignalPoint]) -> Iterator[tuple[str, RowBatch]]:
    """Each table's rows, built when the caller asks for it (a writer may insert one meanwhile)."""
    builders: tuple[tuple[str, Callable[[], RowBatch]], ...] = (
        ("orders", lambda: order_rows(orders, status)), ("fills", lambda: fill_rows(fills)),
        ("trades", lambda: trade_rows(trades, trade_seq_start)), ("signals", lambda: signal_rows(run_id, signals)))
    for name, build in builders:
        with gc_paused():
            batch = build()
        yield name, batch


def model_version_rows(run_id: str, records: Sequence[ModelVersionRecord]) -> RowBatch:
    fields = ("fold_index", "train_start_ts", "train_end_ts", "trade_start_ts", "trade_end_ts", "objective", "seed",
              "threshold", "train_loss", "val_loss", "steps", "train_seconds", "config", "losses", "sample_check",
              "checkpoint")
    columns = {"run_id": [run_id] * len(records), "created_at": [utc_now_iso()] * len(records),
               **{name: [getattr(r, name) for r in records] for name in fields}}
    return RowBatch.from_columns(columns, floats=("threshold", "train_loss", "val_loss", "train_seconds"))
