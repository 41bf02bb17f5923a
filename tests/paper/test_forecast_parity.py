"""Paper trading = the backtest for the score strategy's forecast target (cost-aware entries, horizon
exits), with market entries and with passive limit entries under a maker/taker fee schedule.

A run_paper.py process (tiny walk-forward settings, folds fitted while it trades) against the
loopback exchange; then run_backtest.py over the candles it stored, with the same flags. Orders,
fills (maker fees included), trades, equity, signals and folds must be the same rows.
"""
from __future__ import annotations

import pytest

from domain.types import Bar

from .helpers import (SCORE_OPTS, SCORE_WARMUP, assert_same_rows, backtest_rows, check_run_integrity,
                      frozen_server, paper_args, run_row, run_to_end, stored_bars, table_rows)

LIVE = 120
START = SCORE_WARMUP + 40
_TINY = [o for o in SCORE_OPTS if o not in ("--model-target", "state", "--threshold-quantile", "0.95")]
FORECAST_OPTS = [*_TINY, "--model-target", "forecast", "--horizon-bars", "4", "--cost-margin-pct", "0",
                 "--taker-fee-bps", "1", "--maker-fee-bps", "0.5", "--stop-loss-pct", "1"]
CASES = {
    "market": FORECAST_OPTS,
    "passive": [*FORECAST_OPTS, "--entry-order", "passive", "--passive-offset-bps", "5", "--passive-expiry-bars", "3"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_forecast_paper_run_equals_backtest(case: str, bars: list[Bar], tmp_path) -> None:
    opts = CASES[case]
    db = tmp_path / "paper.db"
    name = f"forecast-{case}"
    server = frozen_server(bars, START)
    proc, rc = run_to_end(server, paper_args(server.url, db, name, strategy="score", max_bars=LIVE, extra=opts),
                          speed=1200, timeout_s=90)
    assert rc == 0, proc.stderr_text()[-2000:]
    run = check_run_integrity(db, run_row(db, name=name)["id"])
    consumed = stored_bars(db, run["id"])
    assert consumed == bars[START - SCORE_WARMUP:START + LIVE]

    _, expected = backtest_rows(consumed, "score", run["trade_from_ts"], tmp_path, extra=opts)
    actual = table_rows(db, run["id"])
    assert_same_rows(actual, expected)
    # the comparison has teeth: trades while live, folds fitted while live, horizon exits
    assert len(expected["trades"]) >= 5 and len(expected["signals"]) == LIVE
    assert "horizon" in {row[11] for row in expected["trades"]}
    folds_live = [r for r in expected["model_versions"] if r[3] is not None and r[3] >= run["trade_from_ts"]]
    assert len(folds_live) >= 1
    entry_rates = {round(fee / (qty * price) * 1e4, 9) for _, _, _, qty, price, fee, reason in expected["fills"]
                   if reason == "entry"}
    if case == "passive":
        statuses = [row[8] for row in expected["orders"] if row[7] == "entry"]
        assert 0.5 in entry_rates and "expired" in statuses  # rested and filled as maker; expired unfilled
    else:
        assert entry_rates == {1.0}
