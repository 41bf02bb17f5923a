"""Open a database by URL (or plain file path), enable WAL for SQLite, check the schema version."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, select
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError
from sqlalchemy.orm import Session

from store.models import SCHEMA_VERSION, Base, Meta

DEFAULT_DB_URL = "sqlite:///btc_score.db"


class StoreError(RuntimeError):
    """The database cannot be used: bad URL, not a database, incompatible schema."""


def normalise_url(url_or_path: str) -> str:
    """Accept a SQLAlchemy URL or a bare SQLite file path."""
    return url_or_path if "://" in url_or_path else f"sqlite:///{url_or_path}"


def init_db(url_or_path: str = DEFAULT_DB_URL, *, read_only: bool = False, create: bool = True) -> Engine:
    """Return an engine for a ready-to-use database.

    SQLite files get WAL journaling (readers never block the writer), a busy
    timeout, and foreign keys. ``read_only`` opens an existing SQLite file in
    ``mode=ro`` so an inspector can never write to (or lock) a live run's DB.
    """
    url = normalise_url(url_or_path)
    sqlite_path = _sqlite_path(url)
    if sqlite_path is not None and (read_only or not create) and not sqlite_path.exists():
        raise StoreError(f"database file not found: {sqlite_path}")
    if sqlite_path is not None and sqlite_path.is_dir():
        raise StoreError(f"{sqlite_path} is a directory, not a database file")
    if sqlite_path is not None and not read_only and create:
        _prepare_folder(sqlite_path)
    try:
        if sqlite_path is not None and read_only:
            engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(
                f"file:{sqlite_path}?mode=ro", uri=True, timeout=30, check_same_thread=False))
        else:
            engine = create_engine(url, connect_args={"timeout": 30} if sqlite_path is not None else {})
    except (ArgumentError, ImportError, ValueError) as exc:
        raise StoreError(f"bad database URL {_safe(url)!r}: {exc}") from None
    if engine.dialect.name == "sqlite":
        _install_sqlite_pragmas(engine, wal=not read_only)
    try:
        _check_or_create_schema(engine, create=create and not read_only)
    except (DatabaseError, OperationalError) as exc:
        engine.dispose()
        raise StoreError(f"cannot open {_safe(url)}: {_first_line(exc)}") from None
    return engine


def _prepare_folder(path: Path) -> None:
    """Create the database file's folder; refuse (StoreError) a folder we cannot write to.

    SQLite in WAL mode writes ``-wal``/``-shm`` files beside the database, so even an
    existing database needs a writable folder.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the folder of database {path}: {exc.strerror or exc}") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise StoreError(f"cannot write database {path}: its folder {path.parent} is read-only")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(f"cannot write database {path}: the file is read-only")


def _safe(url: str) -> str:
    """The URL with any password masked, for messages."""
    from domain.redact import mask_url

    return mask_url(url)


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite"):
        return None
    rest = url.split(":///", 1)[1] if ":///" in url else ""
    if rest in ("", ":memory:"):
        return None
    return Path(rest.split("?", 1)[0])


def _install_sqlite_pragmas(engine: Engine, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=30000")
        if wal:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()


def _check_or_create_schema(engine: Engine, create: bool) -> None:
    tables = set(inspect(engine).get_table_names())
    if not tables:
        if not create:
            raise StoreError("database has no tables: not a database written by this tool")
        Base.metadata.create_all(engine)
        with Session(engine) as session, session.begin():
            session.add(Meta(key="schema_version", value=str(SCHEMA_VERSION)))
        return
    if "meta" not in tables or "runs" not in tables:
        raise StoreError(f"database has tables {sorted(tables)} but not this tool's schema")
    with Session(engine) as session:
        version = session.scalar(select(Meta.value).where(Meta.key == "schema_version"))
    if version != str(SCHEMA_VERSION):
        raise StoreError(f"database schema version {version} is incompatible with this code "
                         f"(expects {SCHEMA_VERSION}); use a new --db file")
    if create:
        Base.metadata.create_all(engine)  # adds tables introduced without a version bump


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "orig", exc) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
