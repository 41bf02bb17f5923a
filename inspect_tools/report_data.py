"""Everything a report draws, read once from one snapshot of the store."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from inspect_tools.curves import Benchmark, buy_and_hold
from inspect_tools.queries import StoreReader
from inspect_tools.summary import find_param

Row = dict[str, Any]


@dataclass(frozen=True)
class ReportData:
    run: Row
    counts: dict[str, int]
    trades: list[Row]
    ts_ms: np.ndarray  # equity rows' bar open times (int64 ms UTC)
    close: np.ndarray
    equity: np.ndarray
    drawdown: np.ndarray
    benchmark: Benchmark | None
    signals: list[Row]
    folds: list[Row]

    @property
    def has_equity(self) -> bool:
        return len(self.ts_ms) > 0


def load_report_data(reader: StoreReader, run: Row) -> ReportData:
    run_id = run["id"]
    rows = reader.equity(run_id, initial_cash=run["initial_cash"])
    ts = np.array([r["ts"] for r in rows], dtype=np.int64)
    close = np.array([r["close"] for r in rows], dtype=float)
    benchmark = None
    if rows:
        benchmark = buy_and_hold(ts, close, reader.bars(run_id) if run["mode"] == "paper" else [],
                                 run["initial_cash"], find_param(run["params"], "fee_bps"),
                                 find_param(run["params"], "slippage_bps"),
                                 (run.get("report") or {}).get("buy_and_hold_inputs"))
    return ReportData(run=run, counts=reader.counts(run_id), trades=reader.trades(run_id), ts_ms=ts, close=close,
                      equity=np.array([r["equity"] for r in rows], dtype=float),
                      drawdown=np.array([r["drawdown"] for r in rows], dtype=float), benchmark=benchmark,
                      signals=reader.signals(run_id), folds=reader.model_versions(run_id))
