"""A stand-in paper trader for the concurrency test, run as its own process.

    python -m tests.inspect.paper_writer DB RUN_ID N_BARS SLEEP_S

Drives the real engine bar by bar (z-score strategy on synthetic candles) and
commits each bar's ``Engine.step`` result with ``store.repository.commit_bars`` — one
transaction per bar, exactly what paper mode writes — sleeping between bars. Exits 0 when all bars
are committed; any database error (e.g. "database is locked") exits non-zero.
"""
from __future__ import annotations

import sys
import time

from app.paper import bar_commit
from engine.broker import BrokerConfig
from engine.loop import Engine
from feeds.synthetic import synthetic_bars
from store.db import init_db
from store.repository import commit_bars
from strategies.zscore import ZScoreConfig, ZScoreReversion

WARMUP_BARS = 20


def write(db_path: str, run_id: str, n_bars: int, sleep_s: float) -> None:
    db = init_db(db_path)
    bars = list(synthetic_bars(n_bars, seed=11, timeframe_ms=60_000).iter_bars())
    engine = Engine(ZScoreReversion(ZScoreConfig(window=10, entry_z=1.5)), BrokerConfig(),
                    trade_from_ms=bars[WARMUP_BARS].ts_ms)
    engine.begin()
    trades_done = 0
    for bar in bars:
        step = engine.step(bar)
        commit_bars(db, run_id, [bar_commit(step, trades_done)])
        trades_done += len(step.trades)
        time.sleep(sleep_s)
    db.dispose()


if __name__ == "__main__":
    write(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
