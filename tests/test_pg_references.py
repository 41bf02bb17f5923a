"""PostgreSQL checks the bulk tables' references to their run per statement (migration 0006), with a
foreign key's guarantees: these tests hold the triggers to each of them on a real server (marked ``pg``).

- rows naming a run that does not exist are refused (SQLSTATE 23503), by INSERT, UPDATE and the
  binary COPY a backtest writes with, and nothing of the statement stays;
- the runs named are locked FOR KEY SHARE until the writer commits: a concurrent DELETE waits;
- deleting (or truncating) runs removes their orders, fills, trades and series chunks, and only theirs;
- a run's key and id cannot change; the checks look in the tables' own schema, whatever search_path a
  session sets;
- downgrading to 0005 restores the foreign keys, upgrading again restores the triggers.
"""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, delete, inspect, make_url, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from engine.broker import BrokerConfig
from engine.loop import Engine
from feeds.synthetic import synthetic_bars
from store.batch import RowBatch
from store.bulk import write_batch
from store.db import init_db
from store.repository import RunSpec, count_rows, create_run, save_backtest
from store.schema import STATEMENT_CHECKED_REFS, FillRow, OrderRow, RunRow, SeriesChunkRow, TradeRow
from strategies.zscore import ZScoreConfig, ZScoreReversion

pytestmark = pytest.mark.pg

_COUNTED = ("orders", "fills", "trades", "series_chunks")


def _stored_run(db) -> str:
    engine = Engine(ZScoreReversion(ZScoreConfig(window=10, entry_z=1.0)), BrokerConfig())
    events = engine.run(synthetic_bars(400, seed=5).iter_bars())
    run_id = create_run(db, RunSpec(mode="backtest", strategy="zscore", initial_cash=100_000.0))
    save_backtest(db, run_id, events, engine.broker.status, {}, None)
    return run_id


def _key(db, run_id: str) -> int:
    with db.connect() as conn:
        return conn.execute(text("SELECT key FROM runs WHERE id = :id"), {"id": run_id}).scalar_one()


def _counts(db, run_id: str) -> dict[str, int]:
    counts = count_rows(db, run_id)
    with db.connect() as conn:
        counts["series_chunks"] = conn.execute(text("SELECT count(*) FROM series_chunks WHERE run_id = :id"),
                                               {"id": run_id}).scalar_one()
    return {t: counts[t] for t in _COUNTED}


def _order(run_key: int, client_id: str) -> dict:
    return {"run_key": run_key, "client_id": client_id, "ts": 0, "type": "market", "reason": "entry",
            "status": "filled"}


@pytest.fixture
def db(pg_url: str):
    engine = init_db(pg_url)
    yield engine
    engine.dispose()


def test_the_bulk_tables_have_no_foreign_key_to_runs_but_the_checking_triggers(db) -> None:
    with db.connect() as conn:
        insp = inspect(conn)
        for table in STATEMENT_CHECKED_REFS:
            assert [fk for fk in insp.get_foreign_keys(table) if fk["referred_table"] == "runs"] == []
        triggers = {(r[0], r[1]) for r in conn.execute(text(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal"))}
        assert {(t, f"{t}_run_ref_{e}") for t in STATEMENT_CHECKED_REFS for e in ("insert", "update")} <= triggers
        # the other tables that refer to runs keep their foreign keys
        assert [fk["referred_columns"] for fk in insp.get_foreign_keys("model_versions")] == [["id"]]


def test_rows_of_a_run_that_does_not_exist_are_refused_by_insert_copy_and_update(db) -> None:
    run_id = _stored_run(db)
    key, before = _key(db, run_id), _counts(db, run_id)
    with pytest.raises(IntegrityError, match="refers to a run that does not exist: run_key = 999999"):
        with db.begin() as conn:
            conn.execute(OrderRow.__table__.insert(), [_order(key, "x1"), _order(999_999, "x2")])
    # the binary COPY a backtest writes with: one bad row in a batch refuses the batch
    batch = RowBatch.from_columns({"run_key": [key, 999_999], "seq": [10_000, 10_001], "side": ["long"] * 2,
                                   "qty": [1.0, 1.0], "entry_ts": [0, 0], "exit_ts": [1, 1],
                                   "entry_price": [1.0, 1.0], "exit_price": [2.0, 2.0], "gross_pnl": [1.0, 1.0],
                                   "fees": [0.0, 0.0], "pnl": [1.0, 1.0], "return_pct": [1.0, 1.0],
                                   "exit_reason": ["signal"] * 2, "bars_held": [1, 1]},
                                  floats=("qty", "entry_price", "exit_price", "gross_pnl", "fees", "pnl", "return_pct"))
    with pytest.raises(IntegrityError, match="foreign_key_violation|does not exist"):
        with db.begin() as conn:
            write_batch(conn, TradeRow.__table__, batch)
    with pytest.raises(IntegrityError, match="run_id = " + "f" * 32):
        with db.begin() as conn:
            conn.execute(SeriesChunkRow.__table__.insert(), [{
                "run_id": "f" * 32, "series": "equity.cash", "chunk_no": 99, "first_ts": 0, "last_ts": 0, "n": 1,
                "dtype": "f8", "encoding": "raw", "data": b"\0" * 8}])
    with pytest.raises(IntegrityError, match="run_key = 999999"):
        with db.begin() as conn:
            conn.execute(update(FillRow).where(FillRow.run_key == key).values(run_key=999_999))
    assert _counts(db, run_id) == before and all(before.values())
    with db.begin() as conn:  # rows of a run that exists still go in, and a status update still works
        conn.execute(OrderRow.__table__.insert(), [_order(key, "x1")])
        conn.execute(update(OrderRow).where(OrderRow.run_key == key).values(status="filled"))
    assert _counts(db, run_id)["orders"] == before["orders"] + 1


def test_the_checks_find_the_tables_whatever_search_path_a_session_sets(db) -> None:
    key = _key(db, _stored_run(db))
    with db.begin() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        conn.execute(text("SET LOCAL search_path TO pg_catalog"))
        conn.execute(text(f"INSERT INTO {schema}.orders (run_key, client_id, ts, type, reason, status) "
                          "VALUES (:k, 'elsewhere', 0, 'market', 'entry', 'filled')"), {"k": key})
    with pytest.raises(IntegrityError, match="does not exist"):
        with db.begin() as conn:
            conn.execute(text("SET LOCAL search_path TO pg_catalog"))
            conn.execute(text(f"INSERT INTO {schema}.orders (run_key, client_id, ts, type, reason, status) "
                              "VALUES (999999, 'nowhere', 0, 'market', 'entry', 'filled')"))


def test_a_database_whose_tables_live_in_their_own_schema_is_checked_there(pg_url: str) -> None:
    """A team's database often keeps an application's tables in a schema of their own (the role's
    search_path names it). The checks must look there, not in ``public``, where a ``runs`` table of
    another program is left alone."""
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text("CREATE SCHEMA btc"))
        conn.execute(text("CREATE TABLE public.runs (key integer, id text)"))  # someone else's
        conn.execute(text("INSERT INTO public.runs VALUES (999999, 'other')"))
    admin.dispose()
    url = make_url(pg_url).update_query_dict({"options": "-csearch_path=btc"}).render_as_string(hide_password=False)
    db = init_db(url)
    try:
        run_id = _stored_run(db)
        key = _key(db, run_id)
        with db.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM btc.orders WHERE run_key = :k"), {"k": key}).scalar_one() > 0
        with pytest.raises(IntegrityError, match="run_key = 999999"):  # in public.runs, not in btc.runs
            with db.begin() as conn:
                conn.execute(OrderRow.__table__.insert(), [_order(999_999, "x")])
        with db.begin() as conn:
            conn.execute(delete(RunRow).where(RunRow.id == run_id))
        with db.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM btc.orders")).scalar_one() == 0
            assert conn.execute(text("SELECT count(*) FROM public.runs")).scalar_one() == 1
    finally:
        db.dispose()


def test_a_runs_rows_being_written_hold_off_its_deletion_until_commit(db) -> None:
    run_id = _stored_run(db)
    key = _key(db, run_id)
    writer, deleter = db.connect(), db.connect()
    try:
        tx = writer.begin()
        writer.execute(OrderRow.__table__.insert(), [_order(key, "late")])  # not committed yet
        deleter.execute(text("SET lock_timeout = '300ms'"))
        with pytest.raises(OperationalError, match="lock timeout"):
            deleter.execute(delete(RunRow).where(RunRow.id == run_id))
        deleter.rollback()
        tx.commit()
        deleter.execute(delete(RunRow).where(RunRow.id == run_id))  # now it goes, taking the late row with it
        deleter.commit()
    finally:
        writer.close()
        deleter.close()
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM orders WHERE run_key = :k"), {"k": key}).scalar_one() == 0


def test_deleting_or_truncating_runs_removes_their_rows_and_only_theirs(db) -> None:
    gone, kept = _stored_run(db), _stored_run(db)
    gone_key, kept_counts = _key(db, gone), _counts(db, kept)
    assert all(_counts(db, gone).values()) and all(kept_counts.values())
    with db.begin() as conn:
        conn.execute(delete(RunRow).where(RunRow.id == gone))
    with db.connect() as conn:
        for table, column in STATEMENT_CHECKED_REFS.items():
            value = gone if column == "run_id" else gone_key
            assert conn.execute(text(f"SELECT count(*) FROM {table} WHERE {column} = :v"),
                                {"v": value}).scalar_one() == 0, table
    assert _counts(db, kept) == kept_counts
    with db.begin() as conn:
        conn.execute(text("TRUNCATE runs CASCADE"))
    with db.connect() as conn:
        assert [conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in _COUNTED] == [0, 0, 0, 0]


def test_a_runs_key_and_id_cannot_change(db) -> None:
    run_id = _stored_run(db)
    for values in ({"key": 424242}, {"id": "e" * 32}):
        with pytest.raises(IntegrityError, match="key and id never change"):
            with db.begin() as conn:
                conn.execute(update(RunRow).where(RunRow.id == run_id).values(**values))
    with db.begin() as conn:  # any other column still updates
        conn.execute(update(RunRow).where(RunRow.id == run_id).values(status="stopped"))


def test_downgrade_restores_the_foreign_keys_and_upgrade_the_triggers(db, pg_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    from store.migrations import HEAD, SCRIPT_LOCATION

    run_id = _stored_run(db)
    before = _counts(db, run_id)
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    engine = create_engine(pg_url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0005_run_keys")
        with engine.connect() as conn:
            insp = inspect(conn)
            assert {t: [fk["constrained_columns"] for fk in insp.get_foreign_keys(t)]
                    for t in STATEMENT_CHECKED_REFS} == {t: [[c]] for t, c in STATEMENT_CHECKED_REFS.items()}
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, HEAD)
    finally:
        engine.dispose()
    assert _counts(db, run_id) == before
    with pytest.raises(IntegrityError, match="does not exist"):
        with db.begin() as conn:
            conn.execute(OrderRow.__table__.insert(), [_order(999_999, "x")])
