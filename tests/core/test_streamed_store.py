"""A backtest's rows written while it runs (store.repository.BacktestWriter.add_final) equal the
rows written after it, order and ids included; a failure after some were written leaves nothing."""
from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text

import app.stored_backtest as stored
import engine.loop as loop
import store.repository as repo
from app.backtest import BacktestRequest
from domain.types import FINAL_STATUSES
from engine.broker import BrokerConfig
from engine.loop import Engine
from feeds.synthetic import synthetic_bars
from store.db import init_db
from store.repository import RunSpec, backtest_writer, count_rows, create_run, get_run, save_backtest
from store.schema import FillRow, OrderRow, TradeRow, of_run
from strategies.zscore import ZScoreConfig, ZScoreReversion
from tests.core.helpers import Scripted
from tests.core.passive import PassiveBracket

BARS = synthetic_bars(1500, seed=4)
ZERO = {"orders": 0, "fills": 0, "trades": 0, "equity": 0, "signals": 0, "bars": 0, "model_versions": 0}


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(repo, "code_version", lambda: "test")
    monkeypatch.setattr(loop, "COMPACT_EVERY", 37)  # many chunk ends, some with orders still open


@pytest.fixture
def db(db_url: str):
    engine = init_db(db_url)
    yield engine
    engine.dispose()


def _spec() -> RunSpec:
    return RunSpec(mode="backtest", strategy="test", initial_cash=100_000.0, timeframe="1h")


def _rows(db: Any, run_id: str) -> dict[str, list[tuple]]:
    """Every stored order, fill and trade of the run in id order, without ids and keys."""
    out = {}
    with db.connect() as conn:
        for table in (OrderRow, FillRow, TradeRow):
            columns = [c for c in table.__table__.columns if c.name not in ("id", "run_key")]
            out[table.__tablename__] = [tuple(r) for r in conn.execute(
                select(*columns).where(of_run(table, run_id)).order_by(table.id))]
    return out


def _far_stop_then_round_trips() -> Scripted:
    """A stop that never triggers (open to the end, ahead of every later order), then round trips."""
    script = {i: [("target", 0.5, "in")] if i % 20 else [("close", "out")] for i in range(10, len(BARS), 10)}
    script[25] = [("stop", "sell", 1.0, "far stop", 0.01)]  # the 3rd order
    return Scripted(script)


STRATEGIES = {"far_stop": _far_stop_then_round_trips,
              "bracket": lambda: PassiveBracket(expire=3, max_hold=9),  # limits that fill or expire, stops
              "zscore": lambda: ZScoreReversion(ZScoreConfig(window=20, entry_z=1.5))}  # the quiet-bar fast path


@pytest.mark.parametrize("name", STRATEGIES)
def test_rows_written_while_running_equal_rows_written_after(db, name: str) -> None:
    after_engine = Engine(STRATEGIES[name](), BrokerConfig())
    after = after_engine.run_series(BARS)
    after_id = create_run(db, _spec())
    save_backtest(db, after_id, after, after_engine.broker.status, {}, None)

    seen: list[tuple[dict[str, int], int, int]] = []  # (written, orders made, orders final) after each chunk
    during_id = create_run(db, _spec())
    with backtest_writer(db, during_id) as writer:
        def listen(events, status) -> None:
            writer.add_final(events, status)
            final = sum(status[o.client_id] in FINAL_STATUSES for o in events.orders)
            seen.append((writer.written, len(events.orders), final))

        engine = Engine(STRATEGIES[name](), BrokerConfig())
        events = engine.run_series(BARS, on_chunk=listen)
        writer.finish(events, engine.broker.status, {}, None)

    assert len(seen) == -(-len(BARS) // 37)
    assert seen[len(seen) // 2][0]["orders"] > 0 and seen[len(seen) // 2][0]["fills"] > 0  # written mid-run
    for written, made, final in seen:
        assert written["orders"] <= final <= made  # only final orders, and only a prefix of them
    if name == "far_stop":  # the open stop held every later, final order back until the end
        assert [written["orders"] for written, _, _ in seen[1:]] == [2] * (len(seen) - 1) and seen[-1][2] > 100
    assert _rows(db, during_id) == _rows(db, after_id)
    assert count_rows(db, during_id) == count_rows(db, after_id)
    assert count_rows(db, during_id)["orders"] == len(events.orders) > 0
    stored_status = {r[0]: r[8] for r in _rows(db, during_id)["orders"]}
    assert stored_status == dict(engine.broker.status)  # incl. orders still open at the end
    assert ("submitted" in stored_status.values()) == (name == "far_stop")


def test_a_failure_after_rows_were_written_leaves_nothing(db, monkeypatch: pytest.MonkeyPatch) -> None:
    """run_and_store with rows streamed (as on PostgreSQL; forced here on SQLite too): the run fails
    in its 5th chunk, after orders and fills went to the store; none of them is kept."""
    monkeypatch.setattr(stored, "streams_while_running", lambda db: True)
    real_execute = stored.execute
    chunks: list[dict[str, int]] = []

    def failing_execute(*args: Any, on_chunk: Any = None, **kwargs: Any) -> Any:
        def listen(events, status) -> None:
            on_chunk(events, status)
            chunks.append(dict(on_chunk.__self__.written))
            if len(chunks) == 5:
                raise RuntimeError("feed broke")
        return real_execute(*args, on_chunk=listen, **kwargs)

    monkeypatch.setattr(stored, "execute", failing_execute)
    request = BacktestRequest(strategy="zscore", params={"window": 20, "entry_z": 1.5})
    with pytest.raises(RuntimeError, match="feed broke"):
        stored.run_and_store(db, request, BARS, name="broken")
    assert chunks[-1]["orders"] > 0 and chunks[-1]["fills"] > 0
    run_id = repo.find_run_by_name(db, "broken").id
    run = get_run(db, run_id)
    assert (run.status, run.error) == ("failed", "RuntimeError: feed broke")
    assert count_rows(db, run_id) == ZERO
    # the store is still usable, and the same run without the failure stores everything
    monkeypatch.setattr(stored, "execute", real_execute)
    ok_id, outcome = stored.run_and_store(db, request, BARS)
    assert count_rows(db, ok_id)["orders"] == len(outcome.result.events.orders) > 0



def test_the_runs_own_error_is_raised_when_marking_it_failed_fails_too(db, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database went away: the run fails, and so does marking it failed. The caller hears why the
    run failed (the first error), not that marking failed; the run row stays 'running'."""
    from sqlalchemy.exc import OperationalError

    def no_server(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("UPDATE runs", {}, ConnectionRefusedError("connection refused"))

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("COPY orders", {}, ConnectionResetError("the connection is lost"))

    monkeypatch.setattr(stored, "mark_run", no_server)
    monkeypatch.setattr(stored, "execute", broken)
    request = BacktestRequest(strategy="zscore", params={"window": 20})
    with pytest.raises(OperationalError, match="the connection is lost"):
        stored.run_and_store(db, request, BARS, name="gone")
    assert get_run(db, repo.find_run_by_name(db, "gone").id).status == "running"

@pytest.mark.pg
def test_postgres_stores_while_running_and_sqlite_after(pg_url: str, tmp_path) -> None:
    dbs = {"postgresql": init_db(pg_url), "sqlite": init_db(str(tmp_path / "a.db"))}
    try:
        assert {name: repo.streams_while_running(db) for name, db in dbs.items()} == \
            {"postgresql": True, "sqlite": False}
    finally:
        for db in dbs.values():
            db.dispose()


@pytest.mark.pg
def test_a_server_that_ends_idle_transactions_does_not_end_a_slow_run(pg_url: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Servers often set idle_in_transaction_session_timeout; a run's transaction idles between chunks
    (a score model trains for minutes) and must not be ended for it."""
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        name = conn.scalar(text("SELECT current_database()"))
        conn.execute(text(f'ALTER DATABASE "{name}" SET idle_in_transaction_session_timeout = 200'))
    admin.dispose()
    db = init_db(pg_url)
    try:
        with db.connect() as conn:
            assert conn.scalar(text("SHOW idle_in_transaction_session_timeout")) == "200ms"
        real_execute = stored.execute

        def slow_execute(*args: Any, on_chunk: Any = None, **kwargs: Any) -> Any:
            def listen(events, status) -> None:
                on_chunk(events, status)
                if len(events.orders) and not getattr(listen, "slept", False):
                    listen.slept = True
                    time.sleep(0.6)  # idle in the open transaction, rows already written
            return real_execute(*args, on_chunk=listen, **kwargs)

        monkeypatch.setattr(stored, "execute", slow_execute)
        run_id, outcome = stored.run_and_store(db, BacktestRequest(strategy="zscore"), BARS)
        assert get_run(db, run_id).status == "completed"
        assert count_rows(db, run_id)["fills"] == len(outcome.result.events.fills) > 0
    finally:
        db.dispose()
