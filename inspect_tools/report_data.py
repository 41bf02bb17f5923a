"""Everything a report draws, read once from one snapshot of the store."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from inspect_tools.curves import Benchmark, buy_and_hold
from inspect_tools.queries import StoreReader, TradeColumns, drawdown
from inspect_tools.summary import find_param
from store.series import SeriesFrame

Row = dict[str, Any]
EQUITY_DRAWN = ("ts", "close", "equity")
SIGNALS_DRAWN = ("ts", "signal", "threshold", "unusualness")


@dataclass(frozen=True)
class ReportData:
    run: Row
    counts: dict[str, int]
    trades: TradeColumns  # every closed trade, in seq order
    ts_ms: np.ndarray  # equity rows' bar open times (int64 ms UTC)
    close: np.ndarray
    equity: np.ndarray
    drawdown: np.ndarray
    benchmark: Benchmark | None
    signals: SeriesFrame
    folds: list[Row]

    @property
    def has_equity(self) -> bool:
        return len(self.ts_ms) > 0


def load_report_data(reader: StoreReader, run: Row) -> ReportData:
    run_id = run["id"]
    # exact arrays (no per-bar Python objects for a 1M-bar run), only the columns the report draws
    frame = reader.equity_series(run_id, EQUITY_DRAWN)
    ts, close, equity = frame.values["ts"], frame.values["close"], frame.values["equity"]
    benchmark = None
    if len(ts):
        benchmark = buy_and_hold(ts, close, reader.bars(run_id) if run["mode"] == "paper" else [],
                                 run["initial_cash"], find_param(run["params"], "fee_bps"),
                                 find_param(run["params"], "slippage_bps"),
                                 (run.get("report") or {}).get("buy_and_hold_inputs"))
    return ReportData(run=run, counts=reader.counts(run_id), trades=reader.trade_columns(run_id), ts_ms=ts, close=close,
                      equity=equity, drawdown=drawdown(equity, run["initial_cash"]), benchmark=benchmark,
                      signals=reader.signal_series(run_id, SIGNALS_DRAWN), folds=reader.model_versions(run_id))
