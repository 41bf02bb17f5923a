"""Schema revisions (Alembic): an old file opens after an explicit upgrade with its runs intact; an
older file without the flag, a newer one and foreign ones are refused in one line and left byte-identical;
the newest revision matches the ORM models exactly (autogenerate finds no difference)."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.config import Config

import run_backtest
from feeds.synthetic import synthetic_bars
from store.db import StoreError, init_db
from store.migrations import HEAD, REVISIONS, SCRIPT_LOCATION
from store.schema import Base
from store.repository import count_rows, get_run, load_series

ROOT = Path(__file__).resolve().parents[2]
BASELINE_SQL = Path(__file__).parent / "fixtures" / "baseline_schema_v1.sql"
OLD_RUN = "928042ce116d4efaa6a678b96f8330ff"
KEYED_COLUMNS = {"orders": "id, client_id, ts, type, side, qty, target_fraction, price, reason, status, signal, "
                           "threshold, model_version",
                 "fills": "id, order_client_id, ts, side, qty, price, fee, reason",
                 "trades": "id, seq, side, qty, entry_ts, exit_ts, entry_price, exit_price, gross_pnl, fees, pnl, "
                           "return_pct, exit_reason, bars_held"}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def old_db(tmp_path: Path) -> Path:
    """A real file in the schema main wrote before migrations (one zscore backtest, rows per bar)."""
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.executescript(BASELINE_SQL.read_text())
    con.close()
    return path


def old_rows(path: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute(sql, (OLD_RUN,)).fetchall()
    finally:
        con.close()


def test_revisions_constant_matches_the_scripts() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    script = ScriptDirectory.from_config(cfg)
    chain = [rev.revision for rev in script.walk_revisions()][::-1]
    assert tuple(chain) == REVISIONS and script.get_current_head() == HEAD


def test_head_matches_the_orm_models(tmp_path: Path) -> None:
    engine = init_db(str(tmp_path / "new.db"))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], f"migrations and store/schema.py differ; add a migration: {diff}"


def test_older_file_is_refused_without_the_flag_and_left_untouched(old_db: Path, capsys) -> None:
    before = sha(old_db)
    with pytest.raises(StoreError, match=r"revision 0001_baseline is older .* --upgrade-db"):
        init_db(str(old_db))
    with pytest.raises(StoreError, match="older") as refused:
        init_db(str(old_db), read_only=True)
    assert "--upgrade-db" not in str(refused.value)  # a reader (the inspector) has no such flag to offer
    csv = synthetic_bars(300, seed=1).to_frame()
    data = old_db.parent / "bars.csv"
    csv.to_csv(data, index=False)
    rc = run_backtest.main(["--data", str(data), "--strategy", "zscore", "--db", str(old_db), "--json"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "upgrade" in err
    assert sha(old_db) == before


def test_older_file_opens_after_upgrade_with_its_runs_readable(old_db: Path, capsys) -> None:
    equity = old_rows(old_db, "SELECT ts, cash, position, close, equity FROM equity WHERE run_id = ? ORDER BY ts")
    signals = old_rows(old_db, "SELECT ts, signal, threshold, unusualness, model_version FROM signals "
                               "WHERE run_id = ? ORDER BY ts")
    trades = old_rows(old_db, "SELECT seq, pnl FROM trades WHERE run_id = ? ORDER BY seq")
    assert len(equity) == 240 and len(signals) == 190 and len(trades) == 10
    before = {table: old_rows(old_db, f"SELECT {cols} FROM {table} WHERE run_id = ? ORDER BY id")
              for table, cols in KEYED_COLUMNS.items()}
    assert all(before.values())
    done = subprocess.run([sys.executable, "-m", "store", "upgrade", "--db", str(old_db)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "0001_baseline -> " + HEAD in done.stdout
    db = init_db(str(old_db))
    try:
        assert get_run(db, OLD_RUN).name == "old-run"
        eq = load_series(db, OLD_RUN, "equity")
        assert [tuple(r.values()) for r in eq.rows()] == equity  # the rows, moved into chunks exactly
        assert [tuple(r.values()) for r in load_series(db, OLD_RUN, "signals").rows()] == signals
        counts = count_rows(db, OLD_RUN)
        assert (counts["equity"], counts["signals"], counts["trades"]) == (240, 190, 10)
    finally:
        db.dispose()
    assert old_rows(old_db, "SELECT count(*) FROM equity WHERE run_id = ?") == [(0,)]  # no duplicate rows left
    for table, cols in KEYED_COLUMNS.items():  # orders, fills, trades: every row now found through runs.key
        assert old_rows(old_db, f"SELECT {cols} FROM {table} WHERE run_key = (SELECT key FROM runs WHERE id = ?) "
                                f"ORDER BY id") == before[table], table
    # and the upgraded file takes new runs
    data = old_db.parent / "bars.csv"
    synthetic_bars(300, seed=1).to_frame().to_csv(data, index=False)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run_backtest.main(["--data", str(data), "--strategy", "zscore", "--db", str(old_db), "--json"]) == 0
    assert json.loads(out.getvalue())["run_id"]


def test_upgrade_flag_on_run_backtest(old_db: Path, tmp_path: Path, capsys) -> None:
    data = tmp_path / "bars.csv"
    synthetic_bars(300, seed=1).to_frame().to_csv(data, index=False)
    rc = run_backtest.main(["--data", str(data), "--strategy", "zscore", "--db", str(old_db), "--json",
                            "--upgrade-db"])
    assert rc == 0, capsys.readouterr().err
    db = init_db(str(old_db), read_only=True)
    try:
        assert count_rows(db, OLD_RUN)["equity"] == 240
    finally:
        db.dispose()


def _foreign_runs_table(path: Path, with_meta: bool) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, owner TEXT, started TEXT)")
    con.execute("INSERT INTO runs (owner, started) VALUES ('someone else', '2024-01-01')")
    if with_meta:
        con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.commit()
    con.close()


def _extra_table(path: Path, with_meta: bool) -> None:
    con = sqlite3.connect(path)
    con.executescript(BASELINE_SQL.read_text())
    con.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    con.commit()
    con.close()


def _foreign_alembic(path: Path, with_meta: bool) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
    con.execute("INSERT INTO alembic_version VALUES ('a1b2c3d4e5f6')")
    con.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY)")
    con.commit()
    con.close()


@pytest.mark.parametrize("make,with_meta,reason", [
    (_foreign_runs_table, False, "not this tool's database"),
    (_foreign_runs_table, True, "table runs has other columns"),
    (_extra_table, True, "unexpected tables ['invoices']"),
    (_foreign_alembic, False, "newer than this code"),
], ids=["runs-other-columns", "runs-other-columns-with-meta", "extra-table", "other-alembic-app"])
def test_foreign_database_is_refused_in_one_line_and_left_byte_identical(tmp_path: Path, make, with_meta: bool,
                                                                       reason: str, capsys) -> None:
    path = tmp_path / "foreign.db"
    make(path, with_meta)
    before = sha(path)
    data = tmp_path / "bars.csv"
    synthetic_bars(300, seed=1).to_frame().to_csv(data, index=False)
    for argv in (["--data", str(data), "--strategy", "zscore", "--db", str(path)],
                 ["--data", str(data), "--strategy", "zscore", "--db", str(path), "--upgrade-db", "--json"]):
        rc = run_backtest.main(argv)
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert rc == 2 and captured.out == "" and len(lines) == 1 and reason in lines[0], (argv, captured)
        assert sha(path) == before, argv
    done = subprocess.run([sys.executable, "inspect_trades.py", "--db", str(path), "runs"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and done.stdout == "" and len(lines) == 1 and reason in lines[0], done.stderr
    assert sha(path) == before
    assert not Path(str(path) + "-wal").exists()


_CREATE_AT_SIGNAL = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from store.db import StoreError, init_db
go = Path(sys.argv[3])
while not go.exists():
    time.sleep(0.001)
time.sleep(float(sys.argv[4]))  # staggered: some probe the file while another is creating it
try:
    init_db(sys.argv[2]).dispose()
    print("ok")
except StoreError as exc:
    print(f"refused: {exc}")
"""


def test_processes_creating_the_same_new_file_at_once_all_open_it(tmp_path: Path) -> None:
    """The schema appears at once for the others (no moment with tables but an empty alembic_version)."""
    for round_ in range(4):
        db, go = tmp_path / f"new{round_}.db", tmp_path / f"go{round_}"
        procs = [subprocess.Popen([sys.executable, "-c", _CREATE_AT_SIGNAL, str(ROOT), str(db), str(go),
                                   str(0.03 * k)], stdout=subprocess.PIPE, text=True) for k in range(6)]
        time.sleep(1.0)  # every process has imported the store and waits for the signal
        go.touch()
        outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
        assert outputs == ["ok"] * 6, outputs
        raw = sqlite3.connect(db)
        try:
            assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
        finally:
            raw.close()
