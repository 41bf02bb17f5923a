"""Bulk inserts of :class:`store.batch.RowBatch` and :class:`store.batch.PackedRows` into the store.

- SQLite: multi-row INSERTs with shared values written as literals; a packed image is
  attached and copied with one ``INSERT … SELECT`` per table.
- PostgreSQL (psycopg): binary COPY.
- Anything else (and JSON columns): SQLAlchemy's executemany.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from sqlalchemy import JSON, BigInteger, Boolean, Connection, Float, Integer, String, insert
from sqlalchemy.exc import DBAPIError, IntegrityError

from store.batch import PackedRows, RowBatch, insert_rows

_PACKED_SCHEMA = "packed_rows"  # where a connection attaches the images it copies from


def write_packed(conn: Connection, tables: Any, packed: PackedRows, shared: dict[str, Any]) -> None:
    """Insert ``packed`` into the tables of ``tables`` (name → Table) inside the caller's transaction,
    each row also given the ``shared`` values (e.g. the run's key). SQLite: attach the image and copy
    with ``INSERT … SELECT``; any other store: as RowBatches through :func:`write_batch`."""
    if conn.dialect.name != "sqlite":
        for name, batch in packed.batches():
            for column, value in shared.items():
                batch = batch.with_shared(column, value)
            write_batch(conn, tables[name], batch)
        return
    import sqlite3

    raw = conn.connection.driver_connection
    statement = f"ATTACH ':memory:' AS {_PACKED_SCHEMA}"
    with _driver_cursor(conn, statement, sqlite3) as cursor:
        # Attached once per connection and left attached: SQLite refuses to detach a schema that the
        # open transaction has read; the next image replaces this one.
        if cursor.execute("SELECT 1 FROM pragma_database_list WHERE name = ?", (_PACKED_SCHEMA,)).fetchone() is None:
            cursor.execute(statement)
        raw.deserialize(packed.image, name=_PACKED_SCHEMA)
        for name, columns, own_shared, n in packed.tables:
            if not n:
                continue
            targets, every = [*shared, *columns], {**shared, **own_shared}  # as RowBatch.with_shared lays them out
            statement = (f"INSERT INTO main.{name} ({', '.join(targets)}) "
                         f"SELECT {_sql_values(targets, every)} FROM {_PACKED_SCHEMA}.{name} ORDER BY rowid")
            cursor.execute(statement)


def write_batch(conn: Connection, table: Any, batch: RowBatch) -> None:
    """Insert ``batch`` into ``table`` inside the caller's transaction: SQLite executemany with
    shared values as literals, PostgreSQL COPY, SQLAlchemy for JSON columns and other dialects."""
    if not batch.n:
        return
    dialect = conn.dialect.name
    types = {c.name: c.type for c in table.columns}
    if any(isinstance(types[c], JSON) for c in batch.columns):  # JSON values need SQLAlchemy's serializer
        conn.execute(insert(table), [dict(zip(batch.columns, row)) for row in batch.rows()])
    elif dialect == "sqlite":
        _executemany(conn, table.name, batch)
    elif dialect == "postgresql" and conn.dialect.driver == "psycopg":
        _copy(conn, table, batch)
    else:
        conn.execute(insert(table), [dict(zip(batch.columns, row)) for row in batch.rows()])


def _executemany(conn: Connection, table_name: str, batch: RowBatch) -> None:
    """SQLite: shared values as literals; the DB-API cursor pulls rows from the column iterator,
    so no list of every row's tuple is built."""
    import sqlite3

    head = f"INSERT INTO {table_name} ({', '.join(batch.columns)}) VALUES "
    with _driver_cursor(conn, head, sqlite3) as cursor:
        insert_rows(cursor, head, f"({_sql_values(batch.columns, batch.shared, bound='?')})", batch)



def _copy(conn: Connection, table: Any, batch: RowBatch) -> None:
    """PostgreSQL: binary COPY, so floats go as their 8 bytes (exact, and no text to format or parse:
    a 1M-bar run's rows cost the client 0.4 s of CPU instead of 1.3-1.5 s)."""
    import psycopg

    statement = f"COPY {table.name} ({', '.join(batch.columns)}) FROM STDIN (FORMAT BINARY)"
    with _driver_cursor(conn, statement, psycopg) as cursor, cursor.copy(statement) as copy:
        copy.set_types([_pg_type(table.c[c].type) for c in batch.columns])
        for row in batch.rows():
            copy.write_row(row)


@contextmanager
def _driver_cursor(conn: Connection, statement: str, driver: Any) -> Iterator[Any]:
    """A DB-API cursor in ``conn``'s transaction whose errors surface as SQLAlchemy's exception types,
    like every other write's (callers catch ``IntegrityError``)."""
    cursor = conn.connection.driver_connection.cursor()
    try:
        yield cursor
    except driver.IntegrityError as exc:
        raise IntegrityError(statement, None, exc) from exc
    except driver.Error as exc:
        raise DBAPIError(statement, None, exc) from exc
    finally:
        cursor.close()


def _pg_type(kind: Any) -> str:
    """The PostgreSQL type a binary COPY sends a column as (a varchar column takes text's binary form)."""
    if isinstance(kind, BigInteger):
        return "int8"
    if isinstance(kind, Integer):
        return "int4"
    if isinstance(kind, Float):
        return "float8"
    if isinstance(kind, Boolean):
        return "bool"
    if isinstance(kind, String):
        return "text"
    raise TypeError(f"no binary COPY type for {kind!r}")



def _sql_values(columns: Sequence[str], shared: dict[str, Any], bound: str | None = None) -> str:
    """The value list of an INSERT: a shared value as its literal, any other column as ``bound``
    (a parameter mark) or, without one, as itself (selected from a table of the same columns)."""
    return ", ".join(_sql_literal(shared[c]) if c in shared else (bound or c) for c in columns)


def _sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if type(value) is int:
        return str(value)
    return "'" + value + "'"  # store.batch.LITERAL_TEXT: no quote can occur
