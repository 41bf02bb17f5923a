"""The paper session in-process on a real SQLite file: it commits each bar's ``StepResult``, and
the stored run equals the backtest of the same bars — also for passive limit entries with
expiry, their bracket stops and a maker/taker fee schedule, and across a restart."""
from __future__ import annotations

from pathlib import Path

import pytest

import store.repository as repo
from app.paper import PaperSession
from engine.broker import BrokerConfig
from engine.loop import Engine
from feeds.synthetic import synthetic_bars
from store.db import init_db
from store.repository import RunSpec, create_run, load_run_bars, save_backtest
from tests.core.passive import PassiveBracket

from .helpers import assert_same_rows, table_rows

CONFIG = BrokerConfig(fee_bps=5.0, maker_fee_bps=2.0)
WARMUP = 60


@pytest.fixture(autouse=True)
def _no_git(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(repo, "code_version", lambda: "test")


def _spec(mode: str) -> RunSpec:
    return RunSpec(mode=mode, strategy="passive_bracket", initial_cash=CONFIG.cash_quote, timeframe="1m")


def test_paper_session_stores_what_the_backtest_stores(tmp_path: Path) -> None:
    path = tmp_path / "paper.db"
    db = init_db(str(path))
    bars = list(synthetic_bars(900, seed=31, timeframe_ms=60_000).iter_bars())
    trade_from = bars[WARMUP].ts_ms

    backtest = Engine(PassiveBracket(), CONFIG, trade_from_ms=trade_from)
    events = backtest.run(bars)
    bt_id = create_run(db, _spec("backtest"))
    save_backtest(db, bt_id, events, backtest.broker.status, {}, None)

    paper_id = create_run(db, _spec("paper"))
    session = PaperSession(db, paper_id, PassiveBracket(), CONFIG, trade_from)
    for bar in bars[:500]:
        session.process(bar)
    session.flush()
    # a restart: a fresh session replays the stored candles, checks them, then carries on
    resumed = PaperSession(db, paper_id, PassiveBracket(), CONFIG, trade_from)
    assert resumed.replay(load_run_bars(db, paper_id)) == 500
    for bar in bars[500:]:
        resumed.process(bar)
    resumed.flush()
    db.dispose()

    expected = table_rows(path, bt_id)
    statuses = [row[8] for row in expected["orders"]]
    assert statuses.count("expired") > 5 and statuses.count("filled") > 10  # the comparison has teeth
    assert_same_rows(table_rows(path, paper_id), expected, rel=0.0,
                     tables=("orders", "fills", "trades", "equity", "signals"))


@pytest.mark.parametrize("flag", ["--maker-fee-bps", "--taker-fee-bps"])
@pytest.mark.parametrize("value", ["nan", "-inf", "-1", "10000"])
def test_run_paper_refuses_bad_fee_schedule_before_anything_exists(tmp_path: Path, capsys, flag: str,
                                                                   value: str) -> None:
    import run_paper

    db = tmp_path / "paper.db"
    rc = run_paper.main(["--strategy", "zscore", "--db", str(db), "--run-name", "x", "--exchange-url",
                         "http://127.0.0.1:9", f"{flag}={value}"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 2 and len(errors) == 1 and errors[0].startswith(f"error: {flag} "), err
    assert not db.exists()
