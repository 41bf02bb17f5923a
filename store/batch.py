"""A table's rows kept column-wise until a database takes them: pure data, no database library.

Why columns, not row tuples: a sweep worker builds a finished run's rows and pickles
them to the driver, the only writer, whose CPU is shared with the workers. So the
driver's part must be small:
- numeric columns travel as numpy arrays: they pickle as raw bytes and come back as
  the same Python numbers with one ``tolist()`` (exact: float64 ↔ float is lossless).
  Only when pickled: a batch written by the process that built it keeps its Python
  columns (converting there and back cost a 1M-bar backtest ~0.4 s);
- a value that every row shares (an order's type, a run's key, a column of None)
  travels once, and on SQLite goes into the INSERT as a literal, so fewer parameters
  are bound per row. Measured on an orders batch: 3.6 µs per row with every column
  bound, 1.9 µs with the six shared ones written as literals.

:class:`PackedRows` goes one step further for a SQLite store: the worker inserts the
batches into an in-memory SQLite database and ships its image; the driver attaches it
and copies each table with one ``INSERT … SELECT`` (store/bulk.py ``write_packed``), so
binding every value (and the statement round per row) happens in the worker. The
driver's CPU per row falls by about 60 % (a 36k-row sweep run: 0.13-0.15 s → 0.055 s),
which is what bounds a sweep's throughput, whatever the number of workers. Values are
exact: SQLite keeps a REAL as its 8 bytes, and an untyped column keeps each value's
storage class.

Why apart from store/bulk.py: building rows is the workers' job, writing them the
driver's. A worker imports this module and never SQLAlchemy (~0.3 s less to start a
worker pool, and less memory per worker).
"""
from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, replace
from itertools import chain, islice, repeat
from typing import Any, Iterator, Sequence

import numpy as np

LITERAL_TEXT = re.compile(r"[A-Za-z0-9_ .:+-]{0,64}")  # text safe to write into SQL as '...'
_INT64 = (-(2 ** 63), 2 ** 63)
_ROWS_PER_INSERT = 256  # rows per multi-row INSERT statement (SQLite)


@dataclass
class RowBatch:
    """Rows of one table: ``varying`` columns hold one value per row, ``shared`` ones one value for all."""

    columns: list[str]  # every column, in insert order
    varying: dict[str, Any]  # column → list, tuple or numpy array, len == n
    shared: dict[str, Any]  # column → the value of every row (None, int or plain text)
    n: int
    floats: frozenset[str] = frozenset()  # the float columns (numpy float64 when pickled)

    @classmethod
    def from_columns(cls, columns: dict[str, Sequence[Any]], floats: Sequence[str] = ()) -> RowBatch:
        """Rows from Python columns (lists or tuples) of equal length; ``floats`` names the float columns.

        SQLite stores a REAL -0.0 as the integer 0, PostgreSQL keeps the sign; -0.0 is written
        as 0.0 (equal as numbers) so both backends hold, and export, the same values.
        """
        n = len(next(iter(columns.values()))) if columns else 0
        varying: dict[str, Any] = {}
        shared: dict[str, Any] = {}
        for name, values in columns.items():
            if n >= 2 and _is_shared(values):
                shared[name] = values[0]
            elif name in floats and 0.0 in values:  # (== compares: -0.0 is found too)
                varying[name] = [0.0 if v == 0 else v for v in values]
            else:
                varying[name] = values
        return cls(list(columns), varying, shared, n, frozenset(floats) & set(varying))

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with numeric columns as numpy arrays (raw bytes, not a Python object per value)."""
        state = dict(self.__dict__)
        state["varying"] = {name: _float_column(values) if name in self.floats else _int_column(values)
                            for name, values in self.varying.items()}
        return state

    def __len__(self) -> int:
        return self.n

    def with_shared(self, name: str, value: Any) -> RowBatch:
        """The same rows with one more column that every row shares (e.g. the run's key), first."""
        return replace(self, columns=[name, *self.columns], shared={name: value, **self.shared})

    def varying_rows(self) -> Iterator[tuple]:
        """Tuples of the varying columns only, in column order (what SQLite binds)."""
        if not self.varying:  # every column shared: n empty parameter tuples, still n rows
            return repeat((), self.n)
        return zip(*(_python(self.varying[c]) for c in self.columns if c in self.varying))

    def rows(self) -> Iterator[tuple]:
        """Full row tuples in column order, shared values repeated."""
        if not self.n:
            return iter(())
        return zip(*(repeat(self.shared[c], self.n) if c in self.shared else _python(self.varying[c])
                     for c in self.columns))



@dataclass
class PackedRows:
    """Several tables' rows as one in-memory SQLite database image (see the module doc)."""

    image: bytes
    tables: list[tuple[str, list[str], dict[str, Any], int]]  # (name, columns, shared values, rows)

    @classmethod
    def pack(cls, batches: Sequence[tuple[str, RowBatch]]) -> PackedRows:
        """Insert the batches' varying columns into untyped tables of a fresh in-memory database."""
        db = sqlite3.connect(":memory:")
        try:
            for name, batch in batches:
                varying = [c for c in batch.columns if c in batch.varying]
                db.execute(f"CREATE TABLE {name} ({', '.join(varying) or '_none'})")
                marks = ", ".join("?" * len(varying)) if varying else "NULL"
                insert_rows(db.cursor(), f"INSERT INTO {name} VALUES ", f"({marks})", batch)
            db.commit()
            image = db.serialize()
        finally:
            db.close()
        return cls(image, [(name, list(b.columns), dict(b.shared), b.n) for name, b in batches])

    def batches(self) -> list[tuple[str, RowBatch]]:
        """The packed tables as RowBatches again (for a store that is not SQLite)."""
        db = sqlite3.connect(":memory:")
        try:
            db.deserialize(self.image)
            out = []
            for name, columns, shared, n in self.tables:
                varying = [c for c in columns if c not in shared]
                rows = db.execute(f"SELECT {', '.join(varying) or 'NULL'} FROM {name} ORDER BY rowid").fetchall()
                values = dict(zip(varying, map(list, zip(*rows)))) if rows and varying else \
                    {c: [] for c in varying}
                out.append((name, RowBatch(columns, values, shared, n)))
            return out
        finally:
            db.close()



def insert_rows(cursor: Any, head: str, one_row: str, batch: RowBatch) -> None:
    """SQLite: ``head`` (``INSERT INTO t (…) VALUES ``) for every row of ``batch``, ``one_row`` being a
    row's value list. Many rows go in each statement (``VALUES (…), (…), …``): a row then costs about
    half the time of one ``executemany`` step each, the same values in the same order."""
    width = len(batch.varying)
    per = _rows_per_statement(cursor.connection, width)
    rows = batch.varying_rows()
    statements = batch.n // per if per > 1 else 0
    if statements:
        cursor.executemany(head + ", ".join([one_row] * per), _flat_groups(rows, per, statements))
    if batch.n > statements * per:  # the rest (the same iterator, past the grouped rows), one by one
        cursor.executemany(head + one_row, rows)


def _rows_per_statement(connection: Any, width: int) -> int:
    """Rows per multi-row INSERT: up to 256, within the connection's limit on parameters per statement."""
    if not width:
        return 1  # only literals: one row per step
    limit = connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return max(1, min(_ROWS_PER_INSERT, limit // width))


def _flat_groups(rows: Iterator[tuple], per: int, count: int) -> Iterator[list]:
    """``count`` parameter lists, each the values of the next ``per`` rows in order."""
    flatten = chain.from_iterable
    for _ in range(count):
        yield list(flatten(islice(rows, per)))



def _is_shared(values: Sequence[Any]) -> bool:
    """Whether every value is the same None, int or plain text (what can be written as an SQL literal)."""
    first = values[0]
    if first is None:
        ok = True
    elif type(first) is int:
        ok = _INT64[0] <= first < _INT64[1]
    elif type(first) is str:
        ok = LITERAL_TEXT.fullmatch(first) is not None
    else:
        return False
    # count() compares with ==, under which 1 == 1.0 == True: the types must match too
    return ok and values.count(first) == len(values) and set(map(type, values)) == {type(first)}


def _float_column(values: Sequence[Any]) -> Any:
    """A float64 array when no value is missing; else the values unchanged."""
    if isinstance(values, np.ndarray) or None in values:
        return values
    try:
        return np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        return values


def _int_column(values: Sequence[Any]) -> Any:
    """An int64 array when every value is a Python int that fits; else the values unchanged."""
    if isinstance(values, np.ndarray) or not values or type(values[0]) is not int or set(map(type, values)) != {int}:
        return values
    try:
        return np.array(values, dtype=np.int64)
    except OverflowError:
        return values


def _python(column: Any) -> list[Any]:
    return column.tolist() if isinstance(column, np.ndarray) else column

