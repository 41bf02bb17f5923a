"""PostgreSQL as a real backend (marked ``pg``; the session starts a throwaway cluster, testkit/pgserver.py).

- the same backtest stored in SQLite and in PostgreSQL exports byte-equal trades, equity, orders;
- ``postgresql://`` URLs go through psycopg 3; the report and listings read PostgreSQL;
- a paper run on PostgreSQL, SIGKILLed mid-way and restarted, ends equal to the backtest on its candles;
- PostgreSQL's schema at the newest revision matches the ORM models (its bulk tables' run references are
  checked by triggers instead of foreign keys); a foreign PG database is refused
  and left as it was.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import signal
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

import engine.loop as engine_loop
import run_backtest
from feeds.synthetic import synthetic_bars
from cli.inspect_trades import main as inspect_main
from store.db import StoreError, init_db
from store.schema import STATEMENT_CHECKED_REFS, Base
from tests.paper.helpers import (PaperProcess, backtest_rows, frozen_server, make_bars, paper_args,
                                 release_clock, assert_same_rows)
from tests.series_oracle import series_rows

pytestmark = pytest.mark.pg


def _backtest(data: Path, db: str, *extra: str, strategy: str = "zscore") -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = run_backtest.main(["--data", str(data), "--strategy", strategy, "--db", db, "--json", *extra])
    assert rc == 0
    return json.loads(out.getvalue())["run_id"]


def _inspect(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = inspect_main(list(args))
    assert rc == 0, args
    return out.getvalue()


TINY_SCORE = {"train_days": 30, "retrain_days": 60, "max_steps": 40, "warm_start_steps": 10, "hidden": 16,
              "sample_check_samples": 0, "threshold_quantile": 0.95}


def test_same_score_run_in_sqlite_and_postgres_stores_the_same_rows(pg_url: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The score strategy (walk-forward models, passive entries that wait or expire), its rows written on
    PostgreSQL while it runs in many chunks and on SQLite after it: the same orders, trades and models."""
    monkeypatch.setattr(engine_loop, "COMPACT_EVERY", 97)
    data = tmp_path / "bars.csv"
    synthetic_bars(3_000, seed=9).to_frame().to_csv(data, index=False)
    params = [a for k, v in TINY_SCORE.items() for a in ("--param", f"{k}={v}")]
    lite = str(tmp_path / "runs.db")
    _backtest(data, lite, "--name", "same", *params, strategy="score")
    _backtest(data, pg_url, "--name", "same", *params, strategy="score")
    for what in ("trades", "orders", "equity"):
        a = _inspect("--db", lite, what, "same", "--format", "csv")
        assert a == _inspect("--db", pg_url, what, "same", "--format", "csv"), what
    orders = list(csv.DictReader(io.StringIO(_inspect("--db", pg_url, "orders", "same", "--format", "csv"))))
    assert len(orders) > 10 and {"filled", "cancelled"} <= {o["status"] for o in orders}  # stops open for bars
    show = [json.loads(_inspect("--db", db, "show", "same", "--format", "json")) for db in (lite, pg_url)]
    assert show[0]["counts"] == show[1]["counts"] and show[0]["counts"]["model_versions"] >= 2


def test_same_run_in_sqlite_and_postgres_exports_byte_equal(pg_url: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_loop, "COMPACT_EVERY", 97)  # PostgreSQL stores while the run goes on, chunk by chunk
    data = tmp_path / "bars.csv"
    synthetic_bars(4_000, seed=9).to_frame().to_csv(data, index=False)
    lite = str(tmp_path / "runs.db")
    plain_pg = "postgresql://" + pg_url.split("://", 1)[1]  # the plain scheme maps to psycopg 3
    id_lite = _backtest(data, lite, "--name", "same")
    id_pg = _backtest(data, plain_pg, "--name", "same")
    for what in ("trades", "equity", "orders"):
        for fmt in ("csv", "json"):
            a = _inspect("--db", lite, what, "same", "--format", fmt)
            b = _inspect("--db", pg_url, what, "same", "--format", fmt)
            assert a == b, f"{what} --format {fmt} differs between SQLite and PostgreSQL"
            assert len(a.splitlines()) > 20
    show_lite = json.loads(_inspect("--db", lite, "show", "same", "--format", "json"))
    show_pg = json.loads(_inspect("--db", pg_url, "show", "same", "--format", "json"))
    assert show_lite["run"]["metrics"] == show_pg["run"]["metrics"]
    assert show_lite["counts"] == show_pg["counts"] and show_pg["counts"]["equity"] == 4_000
    assert id_pg in _inspect("--db", pg_url, "runs", "--format", "csv")
    report = tmp_path / "report.html"
    assert "wrote" in _inspect("--db", pg_url, "report", "same", "-o", str(report))
    assert report.stat().st_size > 10_000
    # the stored chunks decode independently to the same series on both backends
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            def pg_query(sql: str, params) -> list[tuple]:
                return [tuple(r) for r in conn.exec_driver_sql(sql, tuple(params)).all()]
            pg_equity = series_rows(pg_query, id_pg, "equity", placeholder="%s")
    finally:
        engine.dispose()
    import sqlite3
    con = sqlite3.connect(lite)
    lite_equity = series_rows(lambda sql, p: con.execute(sql, p).fetchall(), id_lite, "equity")
    con.close()
    assert pg_equity == lite_equity and len(pg_equity) == 4_000


def test_postgres_schema_matches_models_and_refuses_foreign(pg_server, pg_url: str) -> None:
    engine = init_db(pg_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    finally:
        engine.dispose()
    # the one difference: foreign keys of the models that PostgreSQL checks by triggers (test_pg_references.py)
    assert sorted((d[0], d[1].parent.name, [c.name for c in d[1].columns]) for d in diff) == sorted(
        ("add_fk", table, [column]) for table, column in STATEMENT_CHECKED_REFS.items())
    other = pg_server.create_database("foreign")
    raw = create_engine(other)
    with raw.begin() as conn:
        conn.execute(text("CREATE TABLE runs (id serial primary key, owner text)"))
        conn.execute(text("CREATE TABLE meta (key text primary key, value text)"))
        conn.execute(text("INSERT INTO meta VALUES ('schema_version', '1')"))
    with pytest.raises(StoreError, match="table runs has other columns"):
        init_db(other, upgrade=True)
    with raw.connect() as conn:
        tables = {r[0] for r in conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))}
    raw.dispose()
    assert tables == {"runs", "meta"}  # nothing was created


def test_paper_run_on_postgres_survives_sigkill_and_equals_the_backtest(pg_url: str, tmp_path: Path) -> None:
    bars = make_bars(400, seed=5)
    start, live = 60, 120
    server = frozen_server(bars, start)
    name = "pg-restart"
    try:
        p = PaperProcess(paper_args(server.url, pg_url, name))  # type: ignore[arg-type]
        release_clock(p, server, speed=1200)
        assert p.wait_lines(40, 60), p.stderr_text()[-2000:]
        assert p.kill() == -signal.SIGKILL
        server.set_speed(0)
        engine = create_engine(pg_url)
        with engine.connect() as conn:
            done = conn.execute(text("SELECT count(*) FROM bars b JOIN runs r ON r.id = b.run_id "
                                     "WHERE r.name = :n AND b.ts >= r.trade_from_ts"), {"n": name}).scalar()
        p = PaperProcess(paper_args(server.url, pg_url, name, max_bars=live - done))  # type: ignore[arg-type]
        release_clock(p, server, speed=1200)
        assert p.finish(90) == 0, p.stderr_text()[-2000:]
        engine.dispose()
        _assert_paper_run_is_the_backtest(pg_url, name, live, tmp_path)
    finally:
        server.stop()


def _assert_paper_run_is_the_backtest(pg_url: str, name: str, live: int, tmp_path: Path) -> None:
    """The stopped paper run's equity, signals and trades equal a backtest over the candles it consumed."""
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        run = conn.execute(text("SELECT id, trade_from_ts, status FROM runs WHERE name = :n"), {"n": name}).one()
        consumed = [tuple(r) for r in conn.execute(text(
            "SELECT ts, open, high, low, close, volume FROM bars WHERE run_id = :r ORDER BY ts"), {"r": run.id})]

        def pg_query(sql: str, params) -> list[tuple]:
            return [tuple(r) for r in conn.exec_driver_sql(sql, tuple(params)).all()]
        actual = {"equity": series_rows(pg_query, run.id, "equity", placeholder="%s"),
                  "signals": series_rows(pg_query, run.id, "signals", placeholder="%s"),
                  "trades": pg_query("SELECT seq, side, qty, entry_ts, exit_ts, entry_price, exit_price, gross_pnl, "
                                     "fees, pnl, return_pct, exit_reason, bars_held FROM trades WHERE run_key = "
                                     "(SELECT key FROM runs WHERE id = %s) ORDER BY seq", (run.id,))}
    engine.dispose()
    assert run.status == "stopped"
    from domain.types import Bar
    _, expected = backtest_rows([Bar(*b) for b in consumed], "zscore", run.trade_from_ts, tmp_path)
    assert len(actual["equity"]) == live and len(expected["trades"]) >= 3
    assert_same_rows(actual, expected, tables=("equity", "signals", "trades"))


def _drop_connections(pg_url: str) -> int:
    """End every other session on the test's database, as a server restart or an admin would."""
    admin = create_engine(pg_url)
    try:
        with admin.connect() as conn:
            return conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
    finally:
        admin.dispose()


def test_paper_run_on_postgres_outlives_its_connections_being_dropped(pg_url: str, tmp_path: Path) -> None:
    """Between two candles every connection of the trader is ended: the next checkout finds its connection
    dead and opens another (pool_pre_ping), so the run goes on and still equals the backtest."""
    bars = make_bars(400, seed=6)
    start, live = 60, 80
    server = frozen_server(bars, start)
    name = "pg-dropped"
    try:
        p = PaperProcess(paper_args(server.url, pg_url, name, max_bars=live))  # type: ignore[arg-type]
        release_clock(p, server, speed=1200)
        assert p.wait_lines(30, 60), p.stderr_text()[-2000:]
        server.set_speed(0)  # no candle closes now: the trader waits between commits
        time.sleep(1.0)
        assert _drop_connections(pg_url) >= 1
        server.set_speed(1200)
        assert p.finish(90) == 0, p.stderr_text()[-2000:]
        _assert_paper_run_is_the_backtest(pg_url, name, live, tmp_path)
    finally:
        server.stop()


def test_a_backtest_whose_connections_die_mid_run_fails_in_one_line_and_writes_nothing(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """The server ends the run's sessions while its rows stream: exit 3 ("database unavailable", one line),
    no row of the run but its own, marked failed through a fresh connection."""
    from store.repository import BacktestWriter

    data = tmp_path / "bars.csv"
    synthetic_bars(3_000, seed=17).to_frame().to_csv(data, index=False)
    monkeypatch.setattr(engine_loop, "COMPACT_EVERY", 97)
    calls: list[int] = []
    add_final = BacktestWriter.add_final

    def dropping(self, events, status) -> None:  # type: ignore[no-untyped-def]
        calls.append(len(events.orders))
        if len(calls) == 4:
            assert events.orders and _drop_connections(pg_url) >= 1  # rows were written already
        add_final(self, events, status)

    monkeypatch.setattr(BacktestWriter, "add_final", dropping)
    capsys.readouterr()
    rc = run_backtest.main(["--data", str(data), "--strategy", "zscore", "--db", pg_url, "--json",
                            "--name", "dropped"])
    captured = capsys.readouterr()
    assert rc == 3 and captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and captured.err.startswith("error: database unavailable: ")
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        run = conn.execute(text("SELECT id, key, status FROM runs WHERE name = 'dropped'")).one()
        left = {t: conn.execute(text(f"SELECT count(*) FROM {t} WHERE run_key = :k"), {"k": run.key}).scalar()
                for t in ("orders", "fills", "trades")}
        chunks = conn.execute(text("SELECT count(*) FROM series_chunks WHERE run_id = :r"), {"r": run.id}).scalar()
    engine.dispose()
    assert run.status == "failed" and left == {"orders": 0, "fills": 0, "trades": 0} and chunks == 0
