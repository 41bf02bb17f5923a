"""Writes of one transaction, run in order on a second thread while the caller builds the next rows.

Why: building a large run's rows is Python work that holds the GIL, while the database
drivers release it as a statement executes (sqlite3 around each step, psycopg while it
waits on the server). On a 1M-bar backtest, inserting one table while the next one's rows
and the series chunks are built takes ~0.1 s off the ~0.8 s of storing it.

The connection is used by one thread at a time: the caller hands it over with the first
:meth:`OrderedWriter.submit` and must not touch it again until the ``with`` block has ended.
Writes run in submission order; after the first one fails the rest are skipped, and the
``with`` block raises that error (the caller's transaction then rolls back as usual).
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, Callable

from sqlalchemy import Connection
from sqlalchemy.pool import SingletonThreadPool


def can_write_from_thread(conn: Connection) -> bool:
    """Whether this connection may be used from another thread: not one of a per-thread pool, which
    SQLAlchemy uses for in-memory SQLite databases (their connections refuse other threads)."""
    return not isinstance(conn.engine.pool, SingletonThreadPool)


class OrderedWriter:
    """A context manager: ``submit(fn, *args)`` queues a write; leaving the block waits for all of them.
    With ``threaded=False`` (see :func:`can_write_from_thread`) each write runs at once on the caller's thread."""

    def __init__(self, threaded: bool = True) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer") if threaded else None
        self._futures: list[Future[None]] = []
        self._failed = threading.Event()

    def __enter__(self) -> OrderedWriter:
        return self

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._pool is None:
            fn(*args)
            return
        if self._failed.is_set():  # stop building rows nobody will write
            self._raise_first_error()
        self._futures.append(self._pool.submit(self._run, fn, args))

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        if self._failed.is_set():
            return
        try:
            fn(*args)
        except BaseException:
            self._failed.set()
            raise

    def _raise_first_error(self) -> None:
        for future in self._futures:
            if future.done() and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._pool is None:
            return
        # Always wait: the connection must be back with the caller before it commits or rolls back.
        if exc_type is not None:
            self._failed.set()  # the caller failed: what is still queued is not written
        try:
            self._pool.shutdown(wait=True, cancel_futures=exc_type is not None)
        except BaseException:  # e.g. Ctrl-C while waiting: drop the queue, still wait for the running write
            self._failed.set()
            self._pool.shutdown(wait=True, cancel_futures=True)
            raise
        if exc_type is None:
            for future in self._futures:
                future.result()  # the first error, in submission order
