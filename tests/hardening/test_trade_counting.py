"""Issue 8 item 9: "trades" counts closed round trips; a position still open at the end is reported
separately (open_trade, open_position_qty), in the metrics, the --json output and the database."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import run_backtest
from feeds.synthetic import synthetic_bars
from tests.series_oracle import series_rows


def _run(args: list[str], capsys) -> dict:
    assert run_backtest.main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_an_open_position_at_the_end_is_not_counted_as_a_trade(tmp_path: Path, capsys) -> None:
    series = synthetic_bars(600, seed=3)
    csv = tmp_path / "bars.csv"
    series.to_frame().to_csv(csv, index=False)
    db = tmp_path / "runs.db"
    base = ["--data", str(csv), "--strategy", "zscore", "--db", str(db), "--json"]
    full = _run(base, capsys)
    con = sqlite3.connect(db)
    # per-bar series are column chunks (store/series.py): read with the independent decoder
    positions = [(r[0], r[2]) for r in series_rows(lambda sql, p: con.execute(sql, p).fetchall(), full["run_id"],
                                                   "equity")]
    # The last bar of the first holding period after at least one closed trade: end the data there.
    first_exit = con.execute("select min(exit_ts) from trades where run_key = (select key from runs where id = ?)", (full["run_id"],)).fetchone()[0]
    i = next(k for k, (ts, pos) in enumerate(positions) if ts > first_exit and pos != 0.0)
    end_ts = positions[i + 1][0]  # --end is exclusive: the data stops at bar i, position open
    cut = _run(base + ["--end", str(end_ts)], capsys)
    m = cut["metrics"]
    closed = con.execute("select count(*) from trades where run_key = (select key from runs where id = ?)", (cut["run_id"],)).fetchone()[0]
    last_pos = series_rows(lambda sql, p: con.execute(sql, p).fetchall(), cut["run_id"], "equity")[-1][2]
    assert last_pos != 0.0
    assert m["trades"] == closed >= 1  # closed round trips only
    assert m["open_trade"] == 1 and m["open_position_qty"] == last_pos
    assert json.loads(con.execute("select metrics from runs where id = ?", (cut["run_id"],)).fetchone()[0]) == m
    # Buy-and-hold never closes its position: no closed trade, one open.
    assert cut["buy_and_hold"]["trades"] == 0 and cut["buy_and_hold"]["open_trade"] == 1
    assert cut["buy_and_hold"]["open_position_qty"] > 0
    # A run that ends flat has no open trade.
    flat_end = next(ts for ts, pos in positions[i:] if pos == 0.0)
    flat = _run(base + ["--end", str(flat_end + 3_600_000)], capsys)
    assert flat["metrics"]["open_trade"] == 0 and flat["metrics"]["open_position_qty"] == 0.0
