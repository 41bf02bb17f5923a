"""Open a database by URL (or plain file path): check its schema revision BEFORE touching it.

- SQLite files get WAL journaling (readers never block the writer), 16 KB pages when new, a busy timeout and
  foreign keys; those pragmas are SQLite-only and set only once the file is known to be ours.
- PostgreSQL goes through psycopg 3: ``postgresql://`` and ``postgres://`` mean
  ``postgresql+psycopg://``.
- Schema revisions are Alembic migrations (store/migrations). A new, empty database is
  created at the newest revision; one at an older revision is refused with the command that
  upgrades it (``upgrade=True`` does it); a newer or foreign one is refused and left
  byte-identical: the check runs on a read-only connection before anything else.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shlex
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError, SQLAlchemyError

from store.migrations import BASELINE, HEAD, REVISIONS, SCRIPT_LOCATION
from store.schema import SCHEMA_VERSION

DEFAULT_DB_URL = "sqlite:///btc_score.db"
SQLITE_PAGE_SIZE = 16384  # for new files (see _install_sqlite_pragmas)
UPGRADE_HINT = "back it up, then upgrade it with: python -m store upgrade --db URL"
_UPGRADE_FLAG_HINT = " (or pass --upgrade-db)"  # the scripts that write have the flag; readers (the inspector) do not


def delete_run_hint(run_id: str) -> str:
    """The command that deletes a run (store/maintenance.py), for messages that name a run holding a name."""
    return f"python -m store delete {run_id[:12]} --db …"


def delete_sweep_hint(name: str) -> str:
    """The command that deletes a sweep with all its runs, for messages that name a sweep."""
    return f"python -m store delete-sweep {shlex.quote(name)} --db …"


# Columns of every table of the baseline schema (files made before migrations existed).
BASELINE_COLUMNS = {
    "meta": {"key", "value"},
    "runs": {"id", "name", "mode", "strategy", "engine", "params", "symbol", "exchange", "timeframe", "data_source",
             "data_hash", "code_version", "status", "error", "created_at", "updated_at", "start_ts", "end_ts",
             "trade_from_ts", "last_bar_ts", "bars_processed", "initial_cash", "metrics", "report"},
    "model_versions": {"id", "run_id", "fold_index", "train_start_ts", "train_end_ts", "trade_start_ts",
                       "trade_end_ts", "objective", "seed", "threshold", "train_loss", "val_loss", "steps",
                       "train_seconds", "config", "losses", "sample_check", "checkpoint", "created_at"},
    "orders": {"id", "run_id", "client_id", "ts", "type", "side", "qty", "target_fraction", "price", "reason",
               "status", "signal", "threshold", "model_version"},
    "fills": {"id", "run_id", "order_client_id", "ts", "side", "qty", "price", "fee", "reason"},
    "trades": {"id", "run_id", "seq", "side", "qty", "entry_ts", "exit_ts", "entry_price", "exit_price",
               "gross_pnl", "fees", "pnl", "return_pct", "exit_reason", "bars_held"},
    "equity": {"id", "run_id", "ts", "cash", "position", "close", "equity"},
    "signals": {"id", "run_id", "ts", "signal", "threshold", "unusualness", "model_version"},
    "bars": {"id", "run_id", "ts", "open", "high", "low", "close", "volume"},
}


class StoreError(RuntimeError):
    """The database cannot be used: bad URL, not a database, incompatible schema."""


@dataclass(frozen=True)
class SchemaState:
    """What a database holds: 'empty', or our schema at ``revision`` (None: foreign)."""

    empty: bool
    revision: str | None
    why_foreign: str = ""


def normalise_url(url_or_path: str) -> str:
    """Accept a SQLAlchemy URL or a bare SQLite file path; PostgreSQL URLs use psycopg 3."""
    if "://" not in url_or_path:
        return f"sqlite:///{url_or_path}"
    scheme, rest = url_or_path.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    return url_or_path


def init_db(url_or_path: str = DEFAULT_DB_URL, *, read_only: bool = False, create: bool = True,
            upgrade: bool = False) -> Engine:
    """Return an engine for a ready-to-use database (see the module docstring).

    ``read_only`` opens an existing SQLite file in ``mode=ro`` so an inspector can never
    write to (or lock) a live run's DB; ``upgrade`` migrates an older schema to this code's.
    """
    url = normalise_url(url_or_path)
    sqlite_path = _sqlite_path(url)
    if sqlite_path is not None and (read_only or not create) and not sqlite_path.exists():
        raise StoreError(f"database file not found: {sqlite_path}")
    if sqlite_path is not None and sqlite_path.is_dir():
        raise StoreError(f"{sqlite_path} is a directory, not a database file")
    state = _probe(url, sqlite_path)
    if state.empty:
        if read_only or not create:
            raise StoreError("database has no tables: not a database written by this tool")
    elif state.revision is None:
        raise StoreError(f"{_safe(url)} is not this tool's database ({state.why_foreign}); "
                         "it was left untouched: use another --db")
    elif state.revision not in REVISIONS:
        raise StoreError(f"database schema revision {state.revision} is newer than this code ({HEAD}) or "
                         "unknown; it was left untouched: update the code or use another --db")
    elif state.revision != HEAD and not (upgrade and not read_only):
        raise StoreError(f"database schema revision {state.revision} is older than this code's ({HEAD}); "
                         + UPGRADE_HINT.replace("URL", _safe(url)) + ("" if read_only else _UPGRADE_FLAG_HINT))
    if sqlite_path is not None and not read_only and create:
        _prepare_folder(sqlite_path)
    engine = _make_engine(url, sqlite_path, read_only)
    if state.empty or state.revision != HEAD:
        try:
            _migrate(engine, state)
        except (SQLAlchemyError, OSError) as exc:
            # Two processes creating the same new database: the other one won, which is fine.
            if not (state.empty and _wait_for_head(url, sqlite_path)):
                engine.dispose()
                raise StoreError(f"cannot set up {_safe(url)}: {error_line(exc)}") from None
    return engine


def _wait_for_head(url: str, sqlite_path: Path | None, timeout_s: float = 15.0) -> bool:
    """True once another process has finished creating the database at HEAD."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if _probe(url, sqlite_path).revision == HEAD:
                return True
        except StoreError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def upgrade_db(url_or_path: str) -> tuple[str | None, str]:
    """Migrate a database to this code's schema; returns (revision before, revision after)."""
    url = normalise_url(url_or_path)
    state = _probe(url, _sqlite_path(url))
    init_db(url, upgrade=True).dispose()
    return (None if state.empty else state.revision), HEAD


def _make_engine(url: str, sqlite_path: Path | None, read_only: bool) -> Engine:
    json_args: dict[str, Any] = {"json_serializer": _strict_json}
    try:
        if sqlite_path is not None and read_only:
            engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(
                f"file:{sqlite_path}?mode=ro", uri=True, timeout=30, check_same_thread=False), **json_args)
        else:
            sqlite = url.startswith("sqlite")
            # A server's connections can end between uses (a restart, a proxy's idle timeout, an admin):
            # each checkout tests its connection first and replaces a dead one, so a paper run that
            # commits once a candle outlives them. (A file has no connection to lose.)
            engine = create_engine(url, connect_args={"timeout": 30} if sqlite else {}, pool_pre_ping=not sqlite,
                                   **json_args)
    except (ArgumentError, ImportError, ValueError) as exc:
        raise StoreError(f"bad database URL {_safe(url)!r}: {exc}") from None
    if engine.dialect.name == "sqlite":
        _install_sqlite_pragmas(engine, wal=not read_only)
    return engine


def _probe(url: str, sqlite_path: Path | None) -> SchemaState:
    """Read the schema without changing a byte (SQLite: a mode=ro connection, no pragmas)."""
    if sqlite_path is not None and not sqlite_path.exists():
        return SchemaState(empty=True, revision=None)
    try:
        if sqlite_path is not None:
            probe = create_engine("sqlite://", creator=lambda: sqlite3.connect(
                f"file:{sqlite_path}?mode=ro", uri=True, timeout=30, check_same_thread=False))
        else:
            probe = create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})
    except (ArgumentError, ImportError, ValueError) as exc:
        raise StoreError(f"bad database URL {_safe(url)!r}: {exc}") from None
    try:
        with probe.connect() as conn:
            return _schema_state(conn)
    except (DatabaseError, OperationalError) as exc:
        raise StoreError(f"cannot open {_safe(url)}: {error_line(exc)}") from None
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot open {_safe(url)}: {error_line(exc)}") from None
    finally:
        probe.dispose()


def _schema_state(conn: Connection) -> SchemaState:
    insp = inspect(conn)
    tables = set(insp.get_table_names())
    if not tables:
        return SchemaState(empty=True, revision=None)
    if "alembic_version" in tables:
        revs = [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))]
        if len(revs) != 1:
            return SchemaState(False, None, f"alembic_version holds {len(revs)} revisions")
        if revs[0] in REVISIONS and ("runs" not in tables or "meta" not in tables):
            return SchemaState(False, None, f"tables {sorted(tables)} but no runs/meta table")
        if revs[0] in REVISIONS:
            version = conn.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).scalar()
            if version != str(SCHEMA_VERSION):
                return SchemaState(False, None, f"schema version {version} is incompatible "
                                                f"(expects {SCHEMA_VERSION})")
        return SchemaState(False, revs[0])
    missing = sorted(set(BASELINE_COLUMNS) - tables)
    if "meta" in tables and "runs" in tables and not (tables - set(BASELINE_COLUMNS)):
        for table in tables:
            columns = {c["name"] for c in insp.get_columns(table)}
            if columns != BASELINE_COLUMNS[table]:
                extra, lacking = sorted(columns - BASELINE_COLUMNS[table]), sorted(BASELINE_COLUMNS[table] - columns)
                return SchemaState(False, None, f"table {table} has other columns "
                                                f"(extra {extra or 'none'}, missing {lacking or 'none'})")
        version = conn.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).scalar()
        if version != str(SCHEMA_VERSION):
            return SchemaState(False, None, f"meta.schema_version is {version!r}")
        return SchemaState(False, BASELINE)  # pre-migration file; tables added later may be missing
    if missing and ("meta" not in tables or "runs" not in tables):
        return SchemaState(False, None, f"it has tables {sorted(tables)} but not this tool's schema")
    return SchemaState(False, None, f"unexpected tables {sorted(tables - set(BASELINE_COLUMNS))}")


def _migrate(engine: Engine, state: SchemaState) -> None:
    """Create (empty DB) or upgrade to HEAD in one transaction (DDL is transactional in both dialects)."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # before the import: it logs its plugins at INFO
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            # Python's sqlite3 runs DDL outside a transaction unless one is open: without this, another
            # process could see the tables before alembic_version is filled and refuse the file as
            # foreign. IMMEDIATE also takes the write lock first, so two creators queue up.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        cfg.attributes["connection"] = conn
        if not state.empty and state.revision == BASELINE:
            _create_missing_baseline_tables(conn)
            command.stamp(cfg, BASELINE)
        command.upgrade(cfg, HEAD)
        if state.empty:
            conn.execute(text("INSERT INTO meta (key, value) VALUES ('schema_version', :v)"),
                         {"v": str(SCHEMA_VERSION)})


def _create_missing_baseline_tables(conn: Connection) -> None:
    """Old files may predate a baseline table (the schema then allowed adding tables without a bump)."""
    from store.schema import Base

    present = set(inspect(conn).get_table_names())
    tables = [t for name, t in Base.metadata.tables.items() if name in BASELINE_COLUMNS and name not in present]
    if tables:
        Base.metadata.create_all(conn, tables=tables)


def _strict_json(value: Any) -> str:
    """JSON columns never hold NaN/Infinity (PostgreSQL rejects them): non-finite floats become null."""
    return json.dumps(_finite(value), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return _finite(value.item())
    return value


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
            # A new file gets 16 KB pages (it must be set before WAL is): a backtest writes MB-sized
            # series chunks and long runs of rows, and storing a 1M-bar run takes ~15 % less time than
            # with 4 KB pages, for a file ~1 % larger. A file that exists keeps its page size.
            cur.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()


def error_line(exc: BaseException) -> str:
    """A database error's first line: the driver's message (``orig``) without SQL, parameters or
    SQLAlchemy's help link; the type's name when it has none."""
    text_ = str(getattr(exc, "orig", exc) or exc)
    return text_.strip().splitlines()[0] if text_.strip() else type(exc).__name__
