"""Paper trading = the backtest, candle for candle.

A run_paper.py process trades candles replayed by the loopback exchange on an accelerated
clock; then run_backtest.py runs the same strategy over the candles that run stored, from
the paper run's first live candle. Orders, fills, trades, equity and signals (and, for the
score strategy, the walk-forward folds) must be the same rows (floats within 1e-12).
"""
from __future__ import annotations

import json

from domain.types import Bar

from .conftest import SCORE_LIVE, ZSCORE_LIVE, PaperRun
from .helpers import (SCORE_OPTS, SCORE_WARMUP, TF_MS, ZSCORE_WARMUP, assert_same_rows, backtest_rows,
                      check_run_integrity, frozen_server, paper_args, run_row, run_to_end, stored_bars, table_rows)


def test_zscore_paper_run_equals_backtest_on_its_candles(zscore_paper: PaperRun, bars: list[Bar]) -> None:
    p = zscore_paper
    assert p.rc == 0, p.stderr[-2000:]
    run = check_run_integrity(p.db, p.run["id"])
    s = p.start_index
    assert run["status"] == "stopped"
    assert run["trade_from_ts"] == bars[s].ts_ms  # the candle in progress at start is the first live one
    # It consumed exactly the exchange's final candles: warm-up + live, none partial, none missing.
    consumed = stored_bars(p.db, run["id"])
    assert consumed == bars[s - ZSCORE_WARMUP:s + ZSCORE_LIVE]

    payload, expected = backtest_rows(consumed, "zscore", run["trade_from_ts"], p.workdir)
    actual = table_rows(p.db, run["id"])
    assert len(expected["trades"]) >= 10 and len(expected["equity"]) == ZSCORE_LIVE
    assert_same_rows(actual, expected)
    # The stored metrics of the paper run are the backtest's (same equity and trades).
    metrics = json.loads(run["metrics"])
    assert metrics["trades"] == payload["metrics"]["trades"]
    assert abs(metrics["total_return"] - payload["metrics"]["total_return"]) <= 1e-12


def test_zscore_paper_prints_one_line_per_live_candle(zscore_paper: PaperRun) -> None:
    lines = zscore_paper.stdout.splitlines()
    assert len(lines) == ZSCORE_LIVE
    equity = table_rows(zscore_paper.db, zscore_paper.run["id"])["equity"]
    for line, (ts, _cash, _pos, close, eq) in zip(lines, equity):
        assert f"close={close:,.2f}" in line and line.endswith(f"equity={eq:,.2f}")


def test_score_paper_run_equals_backtest_with_walk_forward_folds(score_paper: PaperRun, bars: list[Bar]) -> None:
    """Several folds are fitted in the paper process (2 of them while trading live) and in the
    backtest: same windows, same thresholds, same signals, same trades."""
    p = score_paper
    assert p.rc == 0, p.stderr[-2000:]
    run = check_run_integrity(p.db, p.run["id"])
    consumed = stored_bars(p.db, run["id"])
    assert consumed == bars[p.start_index - SCORE_WARMUP:p.start_index + SCORE_LIVE]

    _, expected = backtest_rows(consumed, "score", run["trade_from_ts"], p.workdir, extra=SCORE_OPTS)
    actual = table_rows(p.db, run["id"])
    folds_live = [r for r in expected["model_versions"] if r[3] is not None and r[3] >= run["trade_from_ts"]]
    assert len(expected["model_versions"]) >= 4 and len(folds_live) >= 2
    assert len(expected["trades"]) >= 2 and len(expected["signals"]) == SCORE_LIVE
    assert_same_rows(actual, expected)
    assert all(r[3] % TF_MS == 0 for r in actual["model_versions"])


def test_bybit_paper_run_equals_backtest(bars: list[Bar], tmp_path) -> None:
    """The same through bybit's v5 API (klines newest first, retCode envelopes)."""
    start, live = 300, 60
    db = tmp_path / "paper.db"
    server = frozen_server(bars, start, exchanges=("bybit",))
    args = paper_args(server.url, db, "bybit", max_bars=live)
    args[args.index("--exchange") + 1] = "bybit"
    proc, rc = run_to_end(server, args, speed=3000)
    assert rc == 0, proc.stderr_text()[-2000:]
    run = check_run_integrity(db, run_row(db, name="bybit")["id"])
    consumed = stored_bars(db, run["id"])
    assert consumed == bars[start - ZSCORE_WARMUP:start + live]
    assert {r["path"] for r in server.requests} >= {"/v5/market/kline", "/v5/market/time"}
    _, expected = backtest_rows(consumed, "zscore", run["trade_from_ts"], tmp_path)
    assert len(expected["trades"]) >= 2
    assert_same_rows(table_rows(db, run["id"]), expected)
