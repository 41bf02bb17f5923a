"""Runs stored through the real engine and repository, for the inspector's tests.

``store_golden_run`` is the fixed run behind the golden exports: hand-written
candles with round prices and a scripted strategy, so every stored number comes
from +, −, ×, ÷ on exact inputs and is the same on every machine.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import Engine

from engine.broker import BrokerConfig
from engine.loop import Engine as BarEngine
from engine.metrics import buy_and_hold_equity, compute_metrics
from domain.types import Bar, Side
from feeds.synthetic import synthetic_bars
from store.db import init_db
from store.repository import ModelVersionRecord, RunSpec, create_run, save_backtest
from strategies.base import Context, Strategy
from strategies.zscore import ZScoreConfig, ZScoreReversion

HOUR_MS = 3_600_000
START_MS = 1_704_067_200_000  # 2024-01-01 00:00 UTC

# ts offset (hours), open, high, low, close: small round numbers, one gap, one stop hit.
GOLDEN_CANDLES = [
    (0, 100.0, 101.0, 99.0, 100.5), (1, 100.5, 102.0, 100.0, 101.0), (2, 101.0, 101.5, 97.0, 97.5),
    (3, 97.25, 98.5, 96.5, 98.0), (4, 98.0, 100.0, 97.5, 99.5), (5, 99.5, 103.0, 99.0, 102.5),
    (6, 102.75, 103.5, 101.0, 101.5), (7, 101.5, 106.0, 101.0, 105.5), (8, 105.25, 106.0, 104.0, 104.5),
    (9, 104.5, 105.0, 103.5, 104.0), (10, 104.0, 109.0, 103.75, 108.5), (11, 108.5, 109.0, 106.0, 106.5),
    (13, 106.0, 107.0, 104.0, 104.25), (14, 104.25, 105.0, 103.0, 103.5), (15, 103.5, 106.0, 103.25, 105.75),
    (16, 105.75, 106.25, 104.5, 105.0),
]
# bar index → (signal, action): what the scripted strategy does at that bar's close.
GOLDEN_SCRIPT = {2: (-2.5, "long"), 5: (0.75, "close"), 7: (2.25, "short"), 8: (1.5, "stop"),
                 11: (-3.0, "long"), 13: (0.5, "close"), 14: (-2.75, "long")}
GOLDEN_THRESHOLD = 2.0


def golden_bars() -> list[Bar]:
    return [Bar(START_MS + h * HOUR_MS, o, hi, lo, c, 10.0 + i) for i, (h, o, hi, lo, c) in enumerate(GOLDEN_CANDLES)]


class ScriptedStrategy(Strategy):
    """Acts on fixed bars with fixed signals: entries, a signal exit and a protective stop."""

    name = "scripted"

    def __init__(self) -> None:
        self.index = -1

    def on_bar(self, bar: Bar, ctx: Context) -> None:
        self.index += 1
        signal, action = GOLDEN_SCRIPT.get(self.index, (0.1 * (self.index % 3) - 0.1, "none"))
        ctx.record_signal(signal, GOLDEN_THRESHOLD, unusualness=abs(signal) / 2, model_version=self.index // 8)
        info = {"signal": signal, "threshold": GOLDEN_THRESHOLD, "model_version": self.index // 8}
        if action == "long":
            ctx.target_percent(1.0, "entry", **info)
        elif action == "short":
            ctx.target_percent(-1.0, "entry", **info)
        elif action == "close":
            ctx.close("signal", **info)
        elif action == "stop":
            ctx.stop(Side.BUY, 106.5, "stop", **info)


@dataclass(frozen=True)
class StoredRun:
    run_id: str
    name: str | None


def store_run(db: Engine, bars: list[Bar], strategy: Strategy, *, name: str | None, cash: float = 10_000.0,
              fee_bps: float = 10.0, folds: int = 0, baselines: bool = True, symbol: str = "BTC/USDT",
              data_source: str = "test", params: dict | None = None) -> StoredRun:
    """Run ``strategy`` over ``bars`` with the real engine and save it like a backtest CLI would."""
    config = BrokerConfig(cash_quote=cash, fee_bps=fee_bps)
    engine = BarEngine(strategy, config)
    events = engine.run(bars)
    per_year = 8_760.0
    pf = engine.portfolio
    metrics = compute_metrics(events.equity_quote, events.trades, per_year, cash, events.equity_position,
                              pf.fees_paid_quote, pf.turnover_quote)
    report = None
    if baselines:
        opens = np.array([b.open for b in bars])
        closes = np.array([b.close for b in bars])
        bh = buy_and_hold_equity(opens, closes, cash, fee_bps)
        report = {"baselines": {"buyhold": compute_metrics(bh, [], per_year, cash),
                                "zscore": {"total_return": -0.0125, "sharpe": -0.4, "max_drawdown": -0.05,
                                           "trades": 3}},
                  "ic": {"spearman": 0.031, "pearson": 0.027},
                  "folds": [{"fold": k, "trades": 1 + k, "total_return": 0.01 * k} for k in range(folds)],
                  "without_fees": {"total_return": 0.02, "sharpe": 1.1}}
    spec = RunSpec(mode="backtest", strategy=strategy.name, initial_cash=cash, name=name,
                   params=params if params is not None else {"fee_bps": fee_bps, "strategy": {"threshold": 2.0}},
                   symbol=symbol, exchange="binance", timeframe="1h", data_source=data_source,
                   data_hash="ab" * 32)
    run_id = create_run(db, spec)
    save_backtest(db, run_id, events, engine.broker.status, metrics, report, fold_records(folds, bars),
                  start_ts=bars[0].ts_ms, end_ts=bars[-1].ts_ms)
    return StoredRun(run_id, name)


def fold_records(n: int, bars: list[Bar]) -> list[ModelVersionRecord]:
    out = []
    for k in range(n):
        history = [[step, 1.0 / (1 + step / 100) + 0.1 * k] for step in range(0, 500, 50)]
        out.append(ModelVersionRecord(
            fold_index=k, train_start_ts=bars[0].ts_ms, train_end_ts=bars[-1].ts_ms, trade_start_ts=bars[0].ts_ms,
            trade_end_ts=bars[-1].ts_ms, objective="dsm", seed=k, threshold=1.5 + 0.25 * k,
            train_loss=history[-1][1], val_loss=history[-1][1] * 1.1, steps=500, train_seconds=1.5,
            config={"hidden": 64}, losses={"train": history, "val": [[s, v * 1.1] for s, v in history]},
            sample_check={"mmd": 0.01 * (k + 1)}, checkpoint=b"\x00" * 16))
    return out


def store_golden_run(db: Engine) -> StoredRun:
    return store_run(db, golden_bars(), ScriptedStrategy(), name="golden-run", folds=2)


def store_zscore_run(db: Engine, n_bars: int = 3_000, seed: int = 7, name: str | None = "zscore-synthetic",
                     folds: int = 3) -> StoredRun:
    series = synthetic_bars(n_bars, seed=seed)
    return store_run(db, list(series.iter_bars()), ZScoreReversion(ZScoreConfig()), name=name, cash=100_000.0,
                     folds=folds, data_source=series.source)


def make_db(path: Path) -> Engine:
    return init_db(str(path))
