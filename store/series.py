"""Per-bar series of a run (equity, position, cash, close, signal, threshold, ...) stored columnar.

A run's series live in two places, read back as one:
- ``series_chunks``: one row per (run, column, chunk) holding up to ``CHUNK_ROWS`` values as an
  exact compressed array (rows built by store/chunks.py). Backtests write only chunks, in the
  same transaction as their orders, fills and trades.
- the row-wise live tail (tables ``equity`` and ``signals``): a paper run commits one row per
  candle there inside its per-candle transaction; once the tail holds ``TAIL_COMPACT_ROWS`` rows
  it is moved into a chunk (insert chunk + delete rows) in that same transaction, so a crash
  leaves either the rows or the chunk, never both or neither.
Chunks always hold older bars than the tail, so chunks (by number) then tail rows (by ts) is
the series in time order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
from sqlalchemy import Connection, delete, func, insert, select

from store.chunks import SERIES_COLUMNS, chunk_rows, column_from_python
from store.schema import EquityRow, SeriesChunkRow, SignalRow
from store.series_codec import decode, decode_mask

TAIL_COMPACT_ROWS = 10_000

# group -> (live tail table, columns with dtype)
GROUPS: dict[str, tuple[type, tuple[tuple[str, str], ...]]] = {
    "equity": (EquityRow, SERIES_COLUMNS["equity"]),
    "signals": (SignalRow, SERIES_COLUMNS["signals"]),
}


@dataclass
class SeriesFrame:
    """One group's columns: ``values[name]`` arrays (int64 / float64), ``missing[name]`` masks or None."""

    values: dict[str, np.ndarray]
    missing: dict[str, np.ndarray | None]

    def __len__(self) -> int:
        return len(self.values["ts"])

    def column(self, name: str) -> np.ndarray:
        return self.values[name]

    def rows(self) -> Iterator[dict[str, Any]]:
        """Plain dicts of Python values (None where missing), in time order."""
        names = list(self.values)
        cols = []
        for name in names:
            col: list[Any] = self.values[name].tolist()
            mask = self.missing.get(name)
            if mask is not None:
                for i in np.flatnonzero(mask).tolist():
                    col[i] = None
            cols.append(col)
        for row in zip(*cols):
            yield dict(zip(names, row))


def write_chunks(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(SeriesChunkRow.__table__), rows)


def read_group(conn: Connection, run_id: str, group: str, columns: tuple[str, ...] | None = None) -> SeriesFrame:
    """Chunks then live tail of one group, as exact arrays (only ``columns`` of it when given)."""
    tail_table, spec = GROUPS[group]
    if columns is not None:
        spec = tuple((name, dtype) for name, dtype in spec if name in columns)
    names = [name for name, _ in spec]
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    masks: dict[str, list[np.ndarray | None]] = {name: [] for name in names}
    c = SeriesChunkRow
    chunks = conn.execute(select(c.series, c.chunk_no, c.n, c.encoding, c.data, c.nulls)
                          .where(c.run_id == run_id, c.series.in_([f"{group}.{n}" for n in names]))
                          .order_by(c.series, c.chunk_no)).all()
    for row in chunks:
        name = row.series.split(".", 1)[1]
        parts[name].append(decode(row.encoding, row.data, row.n))
        masks[name].append(decode_mask(row.nulls, row.n))
    table = tail_table.__table__
    tail = conn.execute(select(*[table.c[n] for n in names]).where(table.c.run_id == run_id)
                        .order_by(table.c.ts)).all()
    if tail:
        for name, dtype in spec:
            values, missing = column_from_python([r._mapping[name] for r in tail], dtype)
            parts[name].append(values)
            masks[name].append(missing)
    values: dict[str, np.ndarray] = {}
    missing_out: dict[str, np.ndarray | None] = {}
    for name, dtype in spec:
        np_dtype = np.float64 if dtype == "f8" else np.int64
        values[name] = np.concatenate(parts[name]) if parts[name] else np.empty(0, dtype=np_dtype)
        if any(m is not None for m in masks[name]):
            missing_out[name] = np.concatenate([np.zeros(len(p), dtype=bool) if m is None else m
                                                for p, m in zip(parts[name], masks[name])])
        else:
            missing_out[name] = None
    lengths = {len(v) for v in values.values()}
    if len(lengths) > 1:
        raise ValueError(f"run {run_id}: stored {group} columns differ in length {sorted(lengths)}")
    return SeriesFrame(values, missing_out)


def stored_length(conn: Connection, run_id: str, group: str) -> int:
    """Values of a group: chunked + tail rows."""
    c = SeriesChunkRow
    chunked = conn.scalar(select(func.coalesce(func.sum(c.n), 0)).where(c.run_id == run_id,
                                                                        c.series == f"{group}.ts")) or 0
    tail_table = GROUPS[group][0].__table__
    tail = conn.scalar(select(func.count()).select_from(tail_table).where(tail_table.c.run_id == run_id)) or 0
    return int(chunked) + int(tail)


def last_chunked_values(conn: Connection, run_id: str, group: str, names: list[str]) -> dict[str, Any] | None:
    """The newest chunked values of ``names`` (None where missing), or None without chunks."""
    c = SeriesChunkRow
    last = conn.scalar(select(func.max(c.chunk_no)).where(c.run_id == run_id, c.series == f"{group}.ts"))
    if last is None:
        return None
    out = {}
    for row in conn.execute(select(c.series, c.n, c.encoding, c.data, c.nulls)
                            .where(c.run_id == run_id, c.chunk_no == last,
                                   c.series.in_([f"{group}.{n}" for n in names]))):
        mask = decode_mask(row.nulls, row.n)
        value = decode(row.encoding, row.data, row.n)[-1].item()
        out[row.series.split(".", 1)[1]] = None if mask is not None and mask[-1] else value
    return out


def compact_tail(conn: Connection, run_id: str, group: str, min_rows: int | None = None) -> int:
    """Move a group's tail rows into new chunk(s) when there are at least ``min_rows``; returns rows moved.

    Runs inside the caller's transaction (a paper candle's commit), so it is atomic with it.
    """
    tail_table, spec = GROUPS[group]
    table = tail_table.__table__
    n = conn.scalar(select(func.count()).select_from(table).where(table.c.run_id == run_id)) or 0
    if n == 0 or n < (TAIL_COMPACT_ROWS if min_rows is None else min_rows):
        return 0
    names = [name for name, _ in spec]
    tail = conn.execute(select(*[table.c[c] for c in names]).where(table.c.run_id == run_id)
                        .order_by(table.c.ts)).all()
    columns = {name: column_from_python([r._mapping[name] for r in tail], dtype) for name, dtype in spec}
    c = SeriesChunkRow
    last = conn.scalar(select(func.max(c.chunk_no)).where(c.run_id == run_id, c.series == f"{group}.ts"))
    write_chunks(conn, chunk_rows(run_id, group, columns, first_chunk_no=0 if last is None else last + 1))
    conn.execute(delete(table).where(table.c.run_id == run_id))
    return len(tail)
