"""Column-wise row batches (store/batch.py, store/bulk.py) land in the database exactly as the plain rows would.

The reference is the rows themselves, written out by hand: shared values (SQL literals on
SQLite), numpy-backed columns and columns with missing values must all read back unchanged,
on SQLite and PostgreSQL, and a batch must survive pickling (sweep workers ship them), and
packing into a SQLite image (what a sweep worker ships to a SQLite store).
"""
from __future__ import annotations

import math
import pickle
from typing import Any

import pytest
from sqlalchemy import select, text

from store.batch import PackedRows, RowBatch
from store.bulk import write_batch, write_packed
from store.db import init_db
from store.repository import RunSpec, create_run
from store.schema import FillRow, OrderRow, RunRow

COLUMNS = ["client_id", "ts", "type", "side", "qty", "target_fraction", "price", "reason", "status", "signal",
           "threshold", "model_version"]


FILL_COLUMNS = ["order_client_id", "ts", "side", "qty", "price", "fee", "reason"]


@pytest.fixture(params=["pickled", "in-process", "packed"])
def mode(request: pytest.FixtureRequest) -> str:
    """How the rows reach the store: a pickled batch (a sweep worker's, to a PostgreSQL store), the batch
    that built them (a backtest), or packed as a SQLite image (a sweep worker's, to a SQLite store)."""
    return request.param


def _store_and_read(db_url: str, rows: list[tuple], table: Any = OrderRow.__table__,
                    columns: list[str] = COLUMNS, mode: str = "pickled") -> list[tuple]:
    db = init_db(db_url)
    try:
        run_id = create_run(db, RunSpec(mode="backtest", strategy="zscore", initial_cash=1.0))
        with db.connect() as conn:
            key = conn.scalar(select(RunRow.key).where(RunRow.id == run_id))
        values = {name: [r[i] for r in rows] for i, name in enumerate(columns)}
        batch = RowBatch.from_columns(values, floats=("qty", "target_fraction", "price", "signal", "threshold", "fee"))
        if mode == "pickled":  # as a sweep worker hands it to the driver: numeric columns as numpy arrays
            batch = pickle.loads(pickle.dumps(batch))
        with db.begin() as conn:
            if mode == "packed":
                packed = pickle.loads(pickle.dumps(PackedRows.pack([(table.name, batch)])))
                write_packed(conn, RunRow.metadata.tables, packed, {"run_key": key})
            else:
                write_batch(conn, table, batch.with_shared("run_key", key))
        with db.connect() as conn:
            return [tuple(r) for r in conn.execute(text(
                f"SELECT {', '.join(columns)} FROM {table.name} WHERE run_key = :k ORDER BY id"), {"k": key})]
    finally:
        db.dispose()


def test_a_batch_reads_back_as_the_rows_it_was_made_of(db_url: str, mode: str) -> None:
    rows = [(f"o{i}", 1_700_000_000_000 + 3_600_000 * i, "market", None, None, 1.0 if i % 2 else -0.0, None,
             "entry" if i % 3 else "it's odd", "filled", 0.1 * i - 0.35, -1.5, None if i % 4 else i)
            for i in range(1, 9)]
    stored = _store_and_read(db_url, rows, mode=mode)
    expected = [tuple(0.0 if isinstance(v, float) and v == 0 else v for v in r) for r in rows]
    assert stored == expected
    assert all(math.copysign(1.0, r[5]) == 1.0 for r in stored)  # -0.0 is written as 0.0 on both backends


def test_rows_that_share_every_value_are_all_written(db_url: str, mode: str) -> None:
    row = ("o1", 5, "buy", 2.0, 100.0, 0.2, "entry")
    assert _store_and_read(db_url, [row, row, row], FillRow.__table__, FILL_COLUMNS, mode) == [row, row, row]


def test_values_that_cannot_be_literals_are_bound(db_url: str, mode: str) -> None:
    rows = [(f"a'; DROP TABLE orders; -- {i}", 2 ** 62, "market", None, None, 1.0, None, "naïve 'quote'", "filled",
             None, None, None) for i in range(2)]
    assert _store_and_read(db_url, rows, mode=mode) == rows


def test_what_a_batch_shares_and_what_it_keeps_per_row() -> None:
    batch = RowBatch.from_columns({"a": [1, 1], "b": [1.5, 2.5], "c": ["x", "x"], "d": [None, None], "e": [1, True]},
                                  floats=("b",))
    assert batch.shared == {"a": 1, "c": "x", "d": None}
    assert list(batch.rows()) == [(1, 1.5, "x", None, 1), (1, 2.5, "x", None, True)]
    assert list(batch.varying_rows()) == [(1.5, 1), (2.5, True)]
    assert RowBatch.from_columns({"a": [7]}).shared == {}  # one row: nothing to share


def test_whole_numbers_and_gaps_in_a_float_column(db_url: str, mode: str) -> None:
    rows = [(f"o{i}", i, "limit", "buy", 2 if i % 2 else None, 1, 100 + i, "entry", "submitted", None, 0.5, None)
            for i in range(1, 5)]
    stored = _store_and_read(db_url, rows, mode=mode)
    assert stored == rows  # 2 == 2.0: read back as the same numbers
    assert all(isinstance(r[4], float) for r in stored if r[4] is not None)
    assert all(isinstance(r[5], float) and isinstance(r[6], float) for r in stored)


def test_packed_runs_one_after_another_on_one_connection(tmp_path: Any) -> None:
    """The image schema stays attached to a pooled connection: each run's image replaces the last,
    a rolled-back run leaves nothing, and an empty table packs too."""
    db = init_db(f"sqlite:///{tmp_path / 'packed.db'}")
    try:
        keys = []
        for i in range(3):
            run_id = create_run(db, RunSpec(mode="backtest", strategy="zscore", initial_cash=1.0))
            with db.connect() as conn:
                keys.append(conn.scalar(select(RunRow.key).where(RunRow.id == run_id)))
        fills = {k: [(f"o{k}-{j}", j, "buy", 1.0 + j, 100.0, 0.1, "entry") for j in range(k + 2)] for k in keys}

        def packed(key: int) -> PackedRows:
            batch = RowBatch.from_columns({c: [r[i] for r in fills[key]] for i, c in enumerate(FILL_COLUMNS)},
                                          floats=("qty", "price", "fee"))
            empty = RowBatch.from_columns({c: [] for c in COLUMNS})
            return PackedRows.pack([("fills", batch), ("orders", empty)])

        with db.begin() as conn:
            write_packed(conn, RunRow.metadata.tables, packed(keys[0]), {"run_key": keys[0]})
        with pytest.raises(RuntimeError), db.begin() as conn:
            write_packed(conn, RunRow.metadata.tables, packed(keys[1]), {"run_key": keys[1]})
            raise RuntimeError("the run fails after its rows")
        with db.begin() as conn:
            write_packed(conn, RunRow.metadata.tables, packed(keys[2]), {"run_key": keys[2]})
        with db.connect() as conn:
            stored = conn.execute(text(f"SELECT run_key, {', '.join(FILL_COLUMNS)} FROM fills ORDER BY id")).all()
        assert [tuple(r) for r in stored] == [(k, *row) for k in (keys[0], keys[2]) for row in fills[k]]
    finally:
        db.dispose()


@pytest.mark.parametrize("limit, n", [(None, 1_000), (None, 256), (None, 257), (20, 999), (6, 5)])
def test_multi_row_inserts_keep_every_row_in_order(tmp_path, limit: int | None, n: int) -> None:
    """SQLite takes many rows per INSERT statement (as many as its parameter limit allows) and the rest
    one by one: every row lands once, in order (ids follow the rows), values exact."""
    import sqlite3

    from store.batch import insert_rows

    db = sqlite3.connect(tmp_path / "rows.db")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER, name TEXT, x REAL, y REAL, z INTEGER, w REAL)")
    if limit is not None:
        db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
    rows = [(f"o{i}", i * 0.1 + 1e-17, None if i % 7 == 0 else -i / 3, i * 3_600_000 + 2 ** 40, math.pi * i)
            for i in range(n)]
    batch = RowBatch.from_columns({"k": [42] * n, **{c: [r[j] for r in rows]
                                                    for j, c in enumerate(("name", "x", "y", "z", "w"))}})
    insert_rows(db.cursor(), "INSERT INTO t (k, name, x, y, z, w) VALUES ", "(42, ?, ?, ?, ?, ?)", batch)
    got = db.execute("SELECT id, k, name, x, y, z, w FROM t ORDER BY id").fetchall()
    assert [g[0] for g in got] == list(range(1, n + 1))
    assert [g[2:] for g in got] == rows and {g[1] for g in got} == {42}
