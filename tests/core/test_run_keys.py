"""Integer run keys (migration 0005): every run gets its own key, even when processes create runs at
the same moment, and orders/fills/trades stay attached to the right run through it.

Runs on SQLite (the insert takes max + 1 under SQLite's write lock) and PostgreSQL (a sequence).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from store.db import init_db
from store.repository import RunSpec, count_rows, create_run, load_trades, save_backtest
from store.schema import RunRow
from engine.broker import BrokerConfig
from engine.loop import Engine
from feeds.synthetic import synthetic_bars
from strategies.zscore import ZScoreConfig, ZScoreReversion

ROOT = Path(__file__).resolve().parents[2]
_CREATE = ("import sys\n"
           "from store.db import init_db\n"
           "from store.repository import RunSpec, create_run\n"
           "db = init_db(sys.argv[1])\n"
           "for i in range(int(sys.argv[2])):\n"
           "    print(create_run(db, RunSpec(mode='backtest', strategy='zscore', initial_cash=1.0)))\n")


def test_runs_created_by_racing_processes_get_distinct_keys(db_url: str) -> None:
    init_db(db_url).dispose()  # schema first, so the racers only insert
    procs = [subprocess.Popen([sys.executable, "-c", _CREATE, db_url, "15"], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    ids = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        ids += out.split()
    db = init_db(db_url)
    try:
        with db.connect() as conn:
            keys = dict(conn.execute(select(RunRow.id, RunRow.key)).all())
    finally:
        db.dispose()
    assert sorted(keys) == sorted(ids) and len(ids) == 60
    assert None not in keys.values() and len(set(keys.values())) == 60


def test_each_run_reads_back_only_its_own_rows(db_url: str) -> None:
    db = init_db(db_url)
    try:
        stored = {}
        for window in (10, 20, 30):  # three runs with different trades, interleaved in the tables
            engine = Engine(ZScoreReversion(ZScoreConfig(window=window, entry_z=1.0)), BrokerConfig())
            events = engine.run(synthetic_bars(600, seed=window).iter_bars())
            run_id = create_run(db, RunSpec(mode="backtest", strategy="zscore", initial_cash=100_000.0))
            save_backtest(db, run_id, events, engine.broker.status, {}, None)
            stored[run_id] = events
        for run_id, events in stored.items():
            counts = count_rows(db, run_id)
            assert (counts["orders"], counts["fills"], counts["trades"]) == (
                len(events.orders), len(events.fills), len(events.trades)) and counts["trades"] > 0
            trades = load_trades(db, run_id)
            assert [(t["entry_ts"], t["exit_ts"], t["pnl"]) for t in trades] == [
                (t.entry_ts_ms, t.exit_ts_ms, t.pnl_quote) for t in events.trades]
    finally:
        db.dispose()


def test_upgrade_from_string_run_ids_keeps_every_row_with_its_run(db_url: str) -> None:
    """A database at 0004 (rows refer to runs.id) upgraded to HEAD: same rows per run, and new runs add rows."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text

    from store.db import normalise_url, upgrade_db
    from store.migrations import SCRIPT_LOCATION
    from store.schema import SCHEMA_VERSION

    url = normalise_url(db_url)
    engine = create_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004_sweeps")
        conn.execute(text("INSERT INTO meta (key, value) VALUES ('schema_version', :v)"), {"v": str(SCHEMA_VERSION)})
        for n, run in enumerate(("a" * 32, "b" * 32)):
            conn.execute(text("INSERT INTO runs (id, mode, strategy, engine, params, status, created_at, updated_at, "
                              "bars_processed, initial_cash) VALUES (:id, 'backtest', 'zscore', 'native', '{}', "
                              "'completed', 'now', 'now', 0, 1.0)"), {"id": run})
            for i in range(3 + n):  # interleaved ids across the two runs
                conn.execute(text("INSERT INTO orders (run_id, client_id, ts, type, reason, status) "
                                  "VALUES (:r, :c, :ts, 'market', 'entry', 'filled')"), {"r": run, "c": f"o{i}", "ts": i})
                conn.execute(text("INSERT INTO fills (run_id, order_client_id, ts, side, qty, price, fee, reason) "
                                  "VALUES (:r, :c, :ts, 'buy', 1.0, 2.0, 0.1, 'entry')"), {"r": run, "c": f"o{i}", "ts": i})
                conn.execute(text("INSERT INTO trades (run_id, seq, side, qty, entry_ts, exit_ts, entry_price, "
                                  "exit_price, gross_pnl, fees, pnl, return_pct, exit_reason, bars_held) VALUES "
                                  "(:r, :s, 'long', 1.0, 0, 1, 2.0, 3.0, 1.0, 0.2, 0.8, 40.0, 'signal', 1)"),
                             {"r": run, "s": i})
    engine.dispose()
    upgrade_db(db_url)
    db = init_db(db_url)
    try:
        assert count_rows(db, "a" * 32)["orders"] == 3 and count_rows(db, "b" * 32)["fills"] == 4
        assert [t["seq"] for t in load_trades(db, "b" * 32)] == [0, 1, 2, 3]
        engine_ = Engine(ZScoreReversion(ZScoreConfig(window=10, entry_z=1.0)), BrokerConfig())
        events = engine_.run(synthetic_bars(300, seed=3).iter_bars())
        new = create_run(db, RunSpec(mode="backtest", strategy="zscore", initial_cash=100_000.0))
        save_backtest(db, new, events, engine_.broker.status, {}, None)  # fresh row ids after the copied ones
        assert count_rows(db, new)["orders"] == len(events.orders) > 0
        with db.connect() as conn:
            keys = dict(conn.execute(select(RunRow.id, RunRow.key)).all())
        assert len(set(keys.values())) == 3 and keys[new] > max(keys["a" * 32], keys["b" * 32])
    finally:
        db.dispose()
