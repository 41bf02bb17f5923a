"""The store on a real SQLite file: schema + WAL, complete and atomic writes, clear errors."""
from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import store.repository as repo
from engine.broker import BrokerConfig
from engine.loop import Engine, EngineEvents
from domain.types import Order, OrderType, SignalPoint
from feeds.synthetic import synthetic_bars
from store.db import StoreError, init_db
from store.schema import SCHEMA_VERSION, EquityRow, OrderRow, RunRow, SeriesChunkRow
from store.repository import (BarCommit, RunSpec, commit_bars, count_rows, create_run, get_run, mark_run, run_key_of,
                              save_backtest)
from strategies.zscore import ZScoreConfig, ZScoreReversion
from tests.core.helpers import make_bar, make_fill, ts
from tests.inspect.factories import fold_records

TABLES = {"meta", "runs", "model_versions", "orders", "fills", "trades", "equity", "signals", "bars",
          "series_chunks", "alembic_version", "run_leases"}


@pytest.fixture(autouse=True)
def _no_git(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(repo, "code_version", lambda: "test")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "runs" / "test.db"  # parent folder created by init_db


@pytest.fixture
def sqlite_db(db_path: Path):
    engine = init_db(str(db_path))
    yield engine
    engine.dispose()


@pytest.fixture
def db(db_url: str):
    """The same tests on a SQLite file and (marked pg) on a real PostgreSQL database."""
    engine = init_db(db_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def backtest() -> tuple[Engine, EngineEvents]:
    engine = Engine(ZScoreReversion(ZScoreConfig(window=20, entry_z=1.5)), BrokerConfig())
    events = engine.run(list(synthetic_bars(400, seed=2)))
    assert events.orders and events.fills and events.trades and events.signals
    return engine, events


def _spec() -> RunSpec:
    return RunSpec(mode="backtest", strategy="zscore", initial_cash=100_000.0, params={"window": 20},
                   timeframe="1h", data_source="synthetic")


def _copy(events: EngineEvents) -> EngineEvents:
    return EngineEvents(list(events.orders), list(events.fills), list(events.trades), list(events.signals),
                        list(events.equity_ts_ms), list(events.equity_cash), list(events.equity_position),
                        list(events.equity_close), list(events.equity_quote))


ZERO = {"orders": 0, "fills": 0, "trades": 0, "equity": 0, "signals": 0, "bars": 0, "model_versions": 0}


def test_init_db_creates_schema_in_wal_mode(sqlite_db, db_path: Path) -> None:
    db = sqlite_db
    assert db_path.exists()
    assert TABLES <= set(inspect(db).get_table_names())
    with db.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("SELECT value FROM meta WHERE key = 'schema_version'").scalar() == \
            str(SCHEMA_VERSION)
    raw = sqlite3.connect(db_path)  # WAL is a property of the file, seen by any client
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        raw.close()


def test_save_backtest_writes_one_row_per_event(db, backtest) -> None:
    engine, events = backtest
    run_id = create_run(db, _spec())
    assert get_run(db, run_id).status == "running"
    save_backtest(db, run_id, events, engine.broker.status, {"total_return": 0.01}, None,
                  start_ts=events.equity_ts_ms[0], end_ts=events.equity_ts_ms[-1])
    assert count_rows(db, run_id) == ZERO | {
        "orders": len(events.orders), "fills": len(events.fills), "trades": len(events.trades),
        "equity": len(events.equity_ts_ms), "signals": len(events.signals)}
    run = get_run(db, run_id)
    assert run.status == "completed" and run.metrics == {"total_return": 0.01}
    assert run.bars_processed == len(events.equity_ts_ms) and run.last_bar_ts == events.equity_ts_ms[-1]
    with Session(db) as s:
        statuses = dict(s.execute(select(OrderRow.client_id, OrderRow.status).where(OrderRow.run_key == run_key_of(run_id))).all())
        tail = s.scalar(select(func.count()).select_from(EquityRow).where(EquityRow.run_id == run_id))
    assert statuses == {o.client_id: engine.broker.status[o.client_id] for o in events.orders}
    assert tail == 0  # a backtest's per-bar series are all chunks, no row per bar


def test_series_read_back_bit_identical(db, backtest) -> None:
    engine, events = backtest
    run_id = create_run(db, _spec())
    save_backtest(db, run_id, events, engine.broker.status, {}, None)
    eq = repo.load_series(db, run_id, "equity")
    for name, column in (("ts", events.equity_ts_ms), ("cash", events.equity_cash),
                         ("position", events.equity_position), ("close", events.equity_close),
                         ("equity", events.equity_quote)):
        stored = eq.values[name]
        assert stored.tobytes() == np.asarray(column, dtype=stored.dtype).tobytes(), name  # bit for bit
    rows = list(repo.load_series(db, run_id, "signals").rows())
    assert [tuple(r.values()) for r in rows] == [tuple(s) for s in events.signals]


def test_signal_series_keeps_none_and_nan_apart_across_chunks(db, monkeypatch) -> None:
    import store.chunks

    monkeypatch.setattr(store.chunks, "CHUNK_ROWS", 7)  # several chunks from 30 points
    points = [SignalPoint(ts(i), float("nan") if i == 3 else -1.5 + i / 7, None if i % 4 == 0 else 2.0 + i,
                          None if i < 10 else 0.125 * i, None if i % 5 == 1 else i // 8) for i in range(30)]
    run_id = create_run(db, _spec())
    save_backtest(db, run_id, EngineEvents(signals=points), {}, {}, None)
    back = [tuple(r.values()) for r in repo.load_series(db, run_id, "signals").rows()]
    assert len(back) == 30
    for got, want in zip(back, points):
        assert got[0] == want[0] and got[2:] == tuple(want[2:])
        assert (got[1] == want[1]) or (np.isnan(got[1]) and np.isnan(want[1]))
    with Session(db) as s:
        assert s.scalar(select(func.count()).select_from(SeriesChunkRow).where(
            SeriesChunkRow.run_id == run_id, SeriesChunkRow.series == "signals.ts")) == 5


def test_paper_tail_is_compacted_atomically_and_reads_back_in_order(db, monkeypatch) -> None:
    import store.series

    monkeypatch.setattr(store.series, "TAIL_COMPACT_ROWS", 4)
    run_id = create_run(db, RunSpec(mode="paper", strategy="zscore", initial_cash=1000.0))
    for i in range(10):
        commit_bars(db, run_id, [_commit(i)])
    with Session(db) as s:
        tail = s.scalar(select(func.count()).select_from(EquityRow).where(EquityRow.run_id == run_id))
        chunks = s.scalar(select(func.count()).select_from(SeriesChunkRow).where(
            SeriesChunkRow.run_id == run_id, SeriesChunkRow.series == "equity.ts"))
    assert (tail, chunks) == (2, 2)  # compacted after bars 4 and 8
    eq = repo.load_series(db, run_id, "equity")
    assert eq.values["ts"].tolist() == [ts(i) for i in range(10)]
    assert eq.values["close"].tolist() == [100.5 + i for i in range(10)]
    assert count_rows(db, run_id)["equity"] == 10 and count_rows(db, run_id)["signals"] == 10
    assert repo.last_stored_state(db, run_id)["equity"] == (ts(9), 1000.0, 0.0, 1000.0)
    # a bar that fails late leaves tail and chunks as they were (compaction is in the bar's transaction)
    with pytest.raises(IntegrityError):
        commit_bars(db, run_id, [_commit(10, equity_ts=ts(9))])
    assert repo.load_series(db, run_id, "equity").values["ts"].tolist() == [ts(i) for i in range(10)]


def test_second_init_db_on_the_same_file_keeps_the_data(db_path: Path, backtest) -> None:
    engine, events = backtest
    first = init_db(str(db_path))
    run_id = create_run(first, _spec())
    save_backtest(first, run_id, events, engine.broker.status, {}, None)
    first.dispose()
    second = init_db(f"sqlite:///{db_path}")
    try:
        assert get_run(second, run_id).status == "completed"
        assert count_rows(second, run_id)["fills"] == len(events.fills)
    finally:
        second.dispose()
    ro = init_db(str(db_path), read_only=True)
    try:
        assert count_rows(ro, run_id)["orders"] == len(events.orders)
    finally:
        ro.dispose()


def test_new_files_get_16k_pages_and_a_file_with_4k_pages_keeps_them(tmp_path: Path, backtest) -> None:
    engine, events = backtest
    fresh = tmp_path / "fresh.db"
    init_db(str(fresh)).dispose()
    older = tmp_path / "older.db"  # an empty file made by an earlier version: 4 KB pages, WAL
    raw = sqlite3.connect(older)
    raw.execute("PRAGMA page_size=4096")
    raw.execute("PRAGMA journal_mode=WAL")
    raw.close()
    db = init_db(str(older))
    try:
        run_id = create_run(db, _spec())
        save_backtest(db, run_id, events, engine.broker.status, {}, None)
        assert count_rows(db, run_id)["trades"] == len(events.trades)
    finally:
        db.dispose()
    sizes = {}
    for path in (fresh, older):
        raw = sqlite3.connect(path)
        sizes[path.name] = (raw.execute("PRAGMA page_size").fetchone()[0], raw.execute("PRAGMA journal_mode").fetchone()[0])
        raw.close()
    assert sizes == {"fresh.db": (16384, "wal"), "older.db": (4096, "wal")}


def test_newer_schema_revision_is_refused_and_left_untouched(sqlite_db, db_path: Path) -> None:
    sqlite_db.dispose()
    raw = sqlite3.connect(db_path)
    raw.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    raw.commit()
    raw.close()
    before = hashlib.sha256(db_path.read_bytes()).hexdigest()
    with pytest.raises(StoreError, match="revision 9999_from_the_future is newer"):
        init_db(str(db_path))
    assert hashlib.sha256(db_path.read_bytes()).hexdigest() == before


def test_foreign_schema_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE something (x INTEGER)")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="not this tool's schema"):
        init_db(str(path))


def test_non_database_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are not the bytes of a SQLite database\n" * 200)
    with pytest.raises(StoreError, match="not a database"):
        init_db(str(path))
    assert path.read_text().startswith("these are not")  # and it was left untouched


def test_bad_url_and_missing_read_only_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        init_db("nosuchdialect://user@host/db")
    with pytest.raises(StoreError, match="not found"):
        init_db(str(tmp_path / "missing.db"), read_only=True)


def _assert_nothing_written_then_mark_failed(db, run_id: str) -> None:
    assert count_rows(db, run_id) == ZERO
    assert get_run(db, run_id).status == "running"
    mark_run(db, run_id, "failed", "boom")
    run = get_run(db, run_id)
    assert (run.status, run.error) == ("failed", "boom")


def test_constraint_violation_in_save_backtest_writes_nothing(db, backtest) -> None:
    engine, events = backtest
    bad = _copy(events)
    bad.orders.append(bad.orders[-1])  # the same client id twice: violates unique (run_id, client_id)
    run_id = create_run(db, _spec())
    with pytest.raises(IntegrityError):
        save_backtest(db, run_id, bad, engine.broker.status, {}, None, model_versions=fold_records(2, [make_bar(0, 1, 1, 1, 1)]))
    _assert_nothing_written_then_mark_failed(db, run_id)


def test_series_out_of_order_is_refused_and_nothing_is_written(db, backtest) -> None:
    engine, events = backtest
    bad = _copy(events)
    for column in (bad.equity_ts_ms, bad.equity_cash, bad.equity_position, bad.equity_close, bad.equity_quote):
        column.append(column[-1])  # a second equity point for the last ts
    run_id = create_run(db, _spec())
    with pytest.raises(ValueError, match="strictly increasing"):
        save_backtest(db, run_id, bad, engine.broker.status, {}, None)
    _assert_nothing_written_then_mark_failed(db, run_id)


def test_exception_midway_through_save_backtest_writes_nothing(db, backtest, monkeypatch) -> None:
    engine, events = backtest
    run_id = create_run(db, _spec())

    def explode(*args, **kwargs):  # orders, fills and trades are already inserted when the series are
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(repo, "write_chunks", explode)
    with pytest.raises(RuntimeError, match="disk on fire"):
        save_backtest(db, run_id, events, engine.broker.status, {}, None)
    _assert_nothing_written_then_mark_failed(db, run_id)
    # other runs are unaffected and the database is still usable
    monkeypatch.undo()
    monkeypatch.setattr(repo, "code_version", lambda: "test")
    ok = create_run(db, _spec())
    save_backtest(db, ok, events, engine.broker.status, {}, None)
    assert count_rows(db, ok)["trades"] == len(events.trades)
    assert count_rows(db, run_id) == ZERO


def _order(i: int, client_id: str) -> Order:
    return Order(client_id=client_id, created_ts_ms=ts(i), type=OrderType.MARKET, reason="entry",
                 target_fraction=1.0, signal=-2.5, threshold=-2.0)


def _commit(i: int, orders=(), fills=(), status=None, equity_ts: int | None = None) -> BarCommit:
    bar = make_bar(i, 100 + i, 101 + i, 99 + i, 100.5 + i)
    equity = {"ts": ts(i) if equity_ts is None else equity_ts, "cash": 1000.0, "position": 0.0,
              "close": bar.close, "equity": 1000.0}
    return BarCommit(bar=bar, orders=list(orders), status_changes=dict(status or {}), fills=list(fills),
                     trades=[], trade_seq_start=0, equity=equity, signals=[SignalPoint(ts(i), -2.5, 2.0)])


def test_commit_bar_writes_one_bars_rows_atomically(db) -> None:
    run_id = create_run(db, RunSpec(mode="paper", strategy="zscore", initial_cash=1000.0))
    commit_bars(db, run_id, [_commit(0, orders=[_order(0, "o1")])])
    assert count_rows(db, run_id) == ZERO | {"bars": 1, "orders": 1, "equity": 1, "signals": 1}
    run = get_run(db, run_id)
    assert (run.last_bar_ts, run.start_ts, run.end_ts, run.bars_processed) == (ts(0), ts(0), ts(0), 1)

    # bar 1: the order from bar 0 fills; its status is updated in the same transaction
    commit_bars(db, run_id, [_commit(1, fills=[make_fill(1, "buy", 9.9, 101.0, 1.0, "entry", "o1")],
                                     status={"o1": "filled"})])
    assert count_rows(db, run_id) == ZERO | {"bars": 2, "orders": 1, "fills": 1, "equity": 2, "signals": 2}
    with Session(db) as s:
        assert s.scalar(select(OrderRow.status).where(OrderRow.run_key == run_key_of(run_id))) == "filled"

    # bar 2 fails late (its equity row reuses bar 1's ts): none of its orders, fills, bar or signal stay
    with pytest.raises(IntegrityError):
        commit_bars(db, run_id, [_commit(2, orders=[_order(2, "o2")],
                                         fills=[make_fill(2, "sell", 9.9, 102.0, 1.0, "exit", "o1")],
                                         status={"o1": "cancelled"}, equity_ts=ts(1))])
    assert count_rows(db, run_id) == ZERO | {"bars": 2, "orders": 1, "fills": 1, "equity": 2, "signals": 2}
    run = get_run(db, run_id)
    assert (run.last_bar_ts, run.bars_processed) == (ts(1), 2)
    with Session(db) as s:
        assert s.scalar(select(OrderRow.status).where(OrderRow.run_key == run_key_of(run_id))) == "filled"
    assert repo.load_run_bars(db, run_id) == [make_bar(i, 100 + i, 101 + i, 99 + i, 100.5 + i) for i in (0, 1)]


def test_order_client_ids_are_unique_per_run(db) -> None:
    run_id = create_run(db, RunSpec(mode="paper", strategy="zscore", initial_cash=1000.0))
    with pytest.raises(IntegrityError):
        commit_bars(db, run_id, [_commit(0, orders=[_order(0, "o1"), _order(0, "o1")])])
    assert count_rows(db, run_id) == ZERO
    other = create_run(db, RunSpec(mode="paper", strategy="zscore", initial_cash=1000.0))
    commit_bars(db, run_id, [_commit(0, orders=[_order(0, "o1")])])
    commit_bars(db, other, [_commit(0, orders=[_order(0, "o1")])])  # the same client id in another run is fine
    with Session(db) as s:
        assert s.scalar(select(RunRow.status).where(RunRow.id == other)) == "running"
