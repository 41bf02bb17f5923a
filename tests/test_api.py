"""The notebook API: the README's example runs, and it agrees with the command-line tools."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import run_backtest
from app.api import backtest, open_run, sweep
from feeds.synthetic import synthetic_bars


@pytest.fixture()
def candles(tmp_path: Path) -> Path:
    path = tmp_path / "btc_1h.csv.gz"
    synthetic_bars(3_000, seed=8).to_frame().to_csv(path, index=False)
    return path


def test_readme_example_runs_and_matches_run_backtest(candles: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    # --- the README's example, verbatim apart from the file name ---
    bt = backtest("btc_1h.csv.gz", "zscore", {"window": 20, "entry_z": 1.5}, fee_bps=10)
    print(bt.metrics["sharpe"], bt.buy_and_hold["sharpe"])
    print(bt.trades.tail())
    sw = sweep(["btc_1h.csv.gz"], "zscore", grid={"window": [20, 50], "entry_z": [1.5, 2.0, 2.5]},
               db="sweeps.db", name="notebook", workers=1)
    print(sw.runs.sort_values("sharpe").tail(3), sw.deflated_sharpe, sw.pbo)
    # ---
    assert isinstance(bt.equity, pd.Series) and isinstance(bt.benchmark, pd.Series)
    assert str(bt.equity.index.tz) == "UTC" and len(bt.equity) == len(bt.benchmark) == 3_000
    assert bt.equity.iloc[-1] == bt.metrics["final_equity"]
    assert bt.benchmark.iloc[-1] == pytest.approx(bt.buy_and_hold["final_equity"], rel=1e-12)
    assert len(bt.trades) == bt.metrics["trades"] > 0 and bt.trades["pnl"].sum() < 0
    capsys.readouterr()
    assert run_backtest.main(["--data", "btc_1h.csv.gz", "--strategy", "zscore", "--param", "window=20",
                              "--param", "entry_z=1.5", "--db", "cli.db", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["metrics"] == bt.metrics
    # Neither the API nor an in-process CLI call leaves a connection open: SQLite folded each WAL back
    # into its file on the last close, so the files are complete and quiet once the calls return.
    assert not (tmp_path / "sweeps.db-wal").exists() and not (tmp_path / "cli.db-wal").exists()
    stored = open_run("cli.db", payload["run_id"][:10])
    assert stored.equity.equals(bt.equity) and stored.metrics == bt.metrics
    pd.testing.assert_frame_equal(stored.trades.reset_index(drop=True), bt.trades.reset_index(drop=True))
    assert len(sw.runs) == 6 and set(sw.runs.columns) >= {"run_id", "window", "entry_z", "sharpe", "final_equity"}
    best = sw.runs.loc[sw.runs["sharpe"].idxmax()]
    assert sw.best["run_id"] == best["run_id"] and 0 <= sw.pbo <= 1
