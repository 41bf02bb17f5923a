"""run_backtest.py as a user meets it: --json contract, stored runs, one-line errors, nothing half-written."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

import run_backtest
from feeds.synthetic import synthetic_bars


@pytest.fixture()
def candles(tmp_path: Path) -> Path:
    path = tmp_path / "bars.csv.gz"
    synthetic_bars(3_000, seed=5).to_frame().to_csv(path, index=False)
    return path


def test_json_prints_one_object_and_the_run_is_stored(candles: Path, tmp_path: Path, capsys) -> None:
    db = tmp_path / "runs.db"
    rc = run_backtest.main(["--data", str(candles), "--strategy", "zscore", "--json", "--db", str(db)])
    out = capsys.readouterr().out
    assert rc == 0
    payload = json.loads(out)  # the whole of stdout is one JSON object
    assert set(payload) >= {"run_id", "metrics", "buy_and_hold", "data"}
    con = sqlite3.connect(db)
    status, metrics = con.execute("select status, metrics from runs where id = ?", (payload["run_id"],)).fetchone()
    assert status == "completed"
    assert json.loads(metrics)["trades"] == payload["metrics"]["trades"] > 0
    n_trades = con.execute("select count(*) from trades where run_key = (select key from runs where id = ?)", (payload["run_id"],)).fetchone()[0]
    assert n_trades == payload["metrics"]["trades"]  # closed round trips
    n_equity = con.execute("select sum(n) from series_chunks where run_id = ? and series = 'equity.ts'",
                           (payload["run_id"],)).fetchone()[0]
    assert n_equity == 3_000  # per-bar series are column chunks, one value per bar


def test_trade_from_warms_up_without_trading(candles: Path, tmp_path: Path, capsys) -> None:
    db = tmp_path / "runs.db"
    series = synthetic_bars(3_000, seed=5)
    start = int(series.ts_ms[2_000])
    rc = run_backtest.main(["--data", str(candles), "--strategy", "zscore", "--json", "--db", str(db),
                            "--trade-from", str(start)])
    payload = json.loads(capsys.readouterr().out)
    assert rc == 0 and payload["period"]["start_ts"] == start
    con = sqlite3.connect(db)
    first_order = con.execute("select min(ts) from orders where run_key = (select key from runs where id = ?)", (payload["run_id"],)).fetchone()[0]
    assert first_order >= start


@pytest.mark.parametrize("content, expected", [
    ("timestamp,open,high,low,close,volume\n1700000000000,1,2,0.5,1.5,1\n1700000060000,1,0.9,0.5,1.5,1\n",
     "line 3: high 0.9 < max(open, close) 1.5"),
    ("timestamp,open,high,low,close\n1700000000000,1,2,0.5,1.5\n", "missing column(s) volume"),
    ("timestamp,open,high,low,close,volume\n1700000060000,1,2,0.5,1.5,1\n1700000000000,1,2,0.5,1.5,1\n",
     "line 3: timestamp 1700000000000"),
])
def test_bad_data_is_one_clear_error_and_nothing_is_written(tmp_path: Path, capsys, content: str,
                                                            expected: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    db = tmp_path / "runs.db"
    rc = run_backtest.main(["--data", str(path), "--strategy", "zscore", "--json", "--db", str(db)])
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.out == ""
    assert captured.err.startswith(f"error: {path}") and expected in captured.err
    assert "Traceback" not in captured.err
    assert not db.exists() or sqlite3.connect(db).execute("select count(*) from runs").fetchone()[0] == 0


def test_bad_arguments_exit_2_with_one_line(candles: Path, tmp_path: Path, capsys) -> None:
    rc = run_backtest.main(["--data", str(candles), "--cash", "-5", "--db", str(tmp_path / "x.db")])
    err = capsys.readouterr().err
    # argparse checks --cash now (issue 8): same one line and exit 2, its message names the allowed range
    assert rc == 2 and err.strip() == "error: --cash must be a finite number in (0, 1e+15], got -5.0"


def test_a_crash_mid_run_marks_the_run_failed_and_writes_no_rows(candles: Path, tmp_path: Path, capsys,
                                                                 monkeypatch) -> None:
    import engine.metrics

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("engine.backtest.compute_metrics", boom)
    db = tmp_path / "runs.db"
    rc = run_backtest.main(["--data", str(candles), "--strategy", "zscore", "--db", str(db)])
    assert rc == 1 and "disk on fire" in capsys.readouterr().err
    con = sqlite3.connect(db)
    assert con.execute("select status, error from runs").fetchall() == [("failed", "RuntimeError: disk on fire")]
    for table in ("orders", "fills", "trades", "equity", "signals", "series_chunks"):
        assert con.execute(f"select count(*) from {table}").fetchone()[0] == 0
    assert engine.metrics.compute_metrics is not boom


def _json_run(candles: Path, db: Path, capsys, *extra: str) -> dict:
    rc = run_backtest.main(["--data", str(candles), "--strategy", "zscore", "--json", "--db", str(db), *extra])
    assert rc == 0
    return json.loads(capsys.readouterr().out)


def test_fee_schedule_flags(candles: Path, tmp_path: Path, capsys) -> None:
    """--fee-bps is the taker fee (--taker-fee-bps is its other name); the maker fee defaults to it.
    The z-score baseline trades only market orders, so a maker fee cannot change its fills."""
    db = tmp_path / "runs.db"
    default = _json_run(candles, db, capsys)
    assert (default["fee_bps"], default["maker_fee_bps"]) == (10.0, 10.0)
    maker = _json_run(candles, db, capsys, "--maker-fee-bps", "2")
    assert maker["maker_fee_bps"] == 2.0 and maker["metrics"] == default["metrics"]
    taker = _json_run(candles, db, capsys, "--taker-fee-bps", "5")
    plain = _json_run(candles, db, capsys, "--fee-bps", "5")
    assert taker["fee_bps"] == 5.0 and taker["metrics"] == plain["metrics"] != default["metrics"]


@pytest.mark.parametrize("flag", ["--maker-fee-bps", "--taker-fee-bps"])
@pytest.mark.parametrize("value", ["nan", "inf", "-1", "10000"])
def test_bad_fee_schedule_values_exit_2_and_store_nothing(candles: Path, tmp_path: Path, capsys, flag: str,
                                                          value: str) -> None:
    db = tmp_path / "runs.db"
    rc = run_backtest.main(["--data", str(candles), "--db", str(db), flag, value])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and flag in err
    assert not db.exists() or sqlite3.connect(db).execute("select count(*) from runs").fetchone()[0] == 0


def test_a_run_that_reaches_zero_equity_is_marked(tmp_path: Path, capsys) -> None:
    """The z-score baseline shorts all-in on a +3 % spike; the price then rises 5 % a bar (z stays
    >= 0, so it never exits by itself) and doubles: the equity floor stops and closes the run."""
    import numpy as np
    import pandas as pd

    returns = [0.001 * (-1) ** i for i in range(60)] + [0.03] + [0.05] * 39
    close = 100.0 * np.exp(np.cumsum([0.0] + returns))
    open_ = np.concatenate(([close[0]], close[:-1]))
    ts = 1_700_002_800_000 + 3_600_000 * np.arange(len(close))
    path = tmp_path / "rising.csv"
    pd.DataFrame({"timestamp": ts, "open": open_, "high": np.maximum(open_, close), "low": np.minimum(open_, close),
                  "close": close, "volume": 1.0}).to_csv(path, index=False)
    db = tmp_path / "runs.db"
    payload = _json_run(path, db, capsys)
    metrics = payload["metrics"]
    assert metrics["equity_floor_hit"] is True and metrics["final_equity"] <= 0.0
    floor_ts = metrics["equity_floor_ts"]
    con = sqlite3.connect(db)
    stored = json.loads(con.execute("select metrics from runs where id = ?", (payload["run_id"],)).fetchone()[0])
    assert stored["equity_floor_hit"] is True and stored["equity_floor_ts"] == floor_ts
    # closed out at the next open; nothing traded after that
    last_fill = con.execute("select ts, reason from fills where run_key = (select key from runs where id = ?) order by id desc limit 1",
                            (payload["run_id"],)).fetchone()
    assert last_fill == (floor_ts + 3_600_000, "equity_floor")
    last_trade = con.execute("select side, exit_ts, exit_reason from trades where run_key = (select key from runs where id = ?) order by seq desc "
                             "limit 1", (payload["run_id"],)).fetchone()
    assert last_trade == ("short", floor_ts + 3_600_000, "equity_floor")


def test_a_zscore_backtest_of_a_clean_csv_does_not_import_pandas(candles: Path, tmp_path: Path) -> None:
    """pandas is for the row-level diagnosis of a bad file and for frames the user asks for: importing it
    costs a run (and every sweep worker) ~0.45 s of start-up."""
    import subprocess
    import sys

    code = ("import sys, run_backtest\n"
            "rc = run_backtest.main(['--strategy', 'zscore', '--data', sys.argv[1], '--db', sys.argv[2], '--json'])\n"
            "print('pandas' in sys.modules, rc, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code, str(candles), str(tmp_path / "p.db")],
                          cwd=Path(run_backtest.__file__).parent, capture_output=True, text=True, timeout=120)
    assert done.stderr.strip().splitlines()[-1] == "False 0", done.stderr


def test_sigterm_marks_the_run_failed_and_writes_nothing_else(tmp_path: Path) -> None:
    """SIGTERM while the run goes (a scheduler's stop) ends it as Ctrl-C does: exit 143, one line, the run
    marked failed with the reason, no order, fill, trade or owner row left."""
    import signal
    import subprocess
    import sys
    import time

    data = tmp_path / "bars.csv"
    synthetic_bars(80_000, seed=9).to_frame().to_csv(data, index=False)  # under backtrader: long enough to stop
    db = tmp_path / "term.db"
    proc = subprocess.Popen([sys.executable, "run_backtest.py", "--data", str(data), "--strategy", "zscore",
                             "--engine", "backtrader", "--db", str(db), "--json", "--name", "stopped"],
                            cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        while True:  # the run row (and its owner) exist: the loop is going
            if db.exists():
                with sqlite3.connect(db) as conn:
                    if conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'run_leases'").fetchone()[0] \
                            and conn.execute("SELECT count(*) FROM run_leases").fetchone()[0]:
                        break
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143 and out == ""
    assert err.strip().splitlines() == ["stopped by SIGTERM; the run is marked failed"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT status, error FROM runs WHERE name = 'stopped'").fetchall() == [
            ("failed", "Terminated: stopped by SIGTERM")]
        assert [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("orders", "fills", "trades", "series_chunks", "run_leases")] == [0, 0, 0, 0, 0]
