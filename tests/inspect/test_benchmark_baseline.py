"""A report's buy-and-hold curve IS the run's stored baseline (issue 9 item 6).

Runs are stored the way users make them (run_backtest.py; a paper session finished by
run_paper's ``finish_run``) in a real SQLite file; the report then reads only the store.
The curve it draws must end exactly (==, not approx) at the stored buy-and-hold
``final_equity``, and equal, bar for bar, buy-and-hold recomputed from the candle file.
The approximation older runs fall back to (fill at the previous close) does not, so
these checks fail if the report stops using the stored baseline.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import run_backtest
from engine.backtest import buy_and_hold_of
from engine.broker import BrokerConfig
from app.paper import PaperSession
from feeds.synthetic import synthetic_bars
from inspect_tools.curves import buy_and_hold as report_buy_and_hold
from inspect_tools.queries import open_reader
from inspect_tools.report_data import load_report_data
from store.db import init_db
from store.repository import RunSpec, create_run
from strategies.zscore import ZScoreConfig, ZScoreReversion

TF_MS = 3_600_000


@pytest.fixture()
def series():
    return synthetic_bars(800, seed=21, timeframe_ms=TF_MS)


def stored_report_data(db_path: Path, ref: str):
    with open_reader(str(db_path)) as reader:
        run = reader.resolve(ref)
        return run, load_report_data(reader, run)


def test_backtest_report_draws_the_stored_baseline(series, tmp_path: Path, capsys, cli) -> None:
    candles = tmp_path / "bars.csv.gz"
    series.to_frame().to_csv(candles, index=False)
    db = tmp_path / "runs.db"
    trade_from = int(series.ts_ms[300])
    rc = run_backtest.main(["--data", str(candles), "--strategy", "zscore", "--db", str(db), "--json",
                            "--name", "bt", "--fee-bps", "25", "--slippage-bps", "7", "--cash", "12345",
                            "--trade-from", str(trade_from)])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)

    run, data = stored_report_data(db, "bt")
    stored = run["report"]["buy_and_hold"]
    assert stored == payload["buy_and_hold"]  # what --json printed is what was stored
    assert data.benchmark is not None and data.benchmark.exact and "stored baseline" in data.benchmark.note
    assert data.benchmark.equity[-1] == stored["final_equity"]
    # bar for bar the curve the run measured, recomputed from the candle file by the same function
    traded = series.between(trade_from, None)
    config = BrokerConfig(cash_quote=12_345.0, fee_bps=25.0, slippage_bps=7.0)
    assert np.array_equal(data.benchmark.equity, buy_and_hold_of(traded, config).curve.equity_quote)
    # ... which the old estimate (fill at the previous close) would not have drawn
    legacy = report_buy_and_hold(data.ts_ms, data.close, [], run["initial_cash"], 25.0, 7.0)
    assert not legacy.exact and legacy.equity[-1] != stored["final_equity"]

    show = cli("--db", db, "show", "bt")  # a z-score run shows its buy-and-hold beside it, not as an extra
    assert show.status == 0, show.err
    assert "buy-and-hold" in show.out and "buy_and_hold_inputs" not in show.out


def test_paper_report_draws_the_stored_baseline(series, tmp_path: Path) -> None:
    db_path = tmp_path / "paper.db"
    db = init_db(str(db_path))
    config = BrokerConfig(cash_quote=50_000.0, fee_bps=10.0, slippage_bps=3.0)
    trade_from = int(series.ts_ms[100])
    run_id = create_run(db, RunSpec(mode="paper", strategy="zscore", initial_cash=config.cash_quote, name="paper",
                                    symbol="BTC/USDT", timeframe="1h", trade_from_ts=trade_from,
                                    params={"fee_bps": 10.0, "slippage_bps": 3.0}))
    session = PaperSession(db, run_id, ZScoreReversion(ZScoreConfig(window=20)), config, trade_from)
    for bar in list(series.iter_bars())[:400]:
        session.process(bar)
    session.flush()
    session.finish(TF_MS, "stopped")
    db.dispose()

    run, data = stored_report_data(db_path, "paper")
    stored = run["report"]["buy_and_hold"]
    assert data.benchmark is not None and "stored baseline" in data.benchmark.note
    assert data.benchmark.equity[-1] == stored["final_equity"]
    traded = series.between(trade_from, int(series.ts_ms[400]))
    assert np.array_equal(data.benchmark.equity, buy_and_hold_of(traded, config).curve.equity_quote)
