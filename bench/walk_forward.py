#!/usr/bin/env python3
"""Benchmark: the full walk-forward score strategy on real BTC 1h candles, on the CPU.

Prints, in one run:
- wall time and peak memory of the whole walk-forward (about 100 monthly folds)
  for each of three seeds, against the targets (≤ 60 s, ≤ 2 GB);
- the live path's per-bar cost (features + standardise + score query), target ≤ 200 µs;
- out-of-sample metrics of the score strategy beside buy-and-hold and the
  z-score baseline, with and without fees, and the signal's IC — for the whole
  out-of-sample span AND for the held-out span from 2022-01-01 only. The
  defaults (σ_signal 0.6, summed return components, 0.99 quantile) were chosen
  on 2018-08 → 2021-12 by the prototype (shared/notes); 2022 on was never tuned on.

Usage: python bench/walk_forward.py [--data FILE] [--seeds 0 1 2] [--held-out-from 2022-01-01]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402

from engine.backtest import run_backtest  # noqa: E402
from engine.broker import BrokerConfig  # noqa: E402
from feeds.files import load_bars  # noqa: E402
from models.features import IncrementalFeatures  # noqa: E402
from reporting.score_report import build_score_report  # noqa: E402
from reporting.tables import metrics_table, rows_table  # noqa: E402
from domain.times import parse_time_ms  # noqa: E402
from app.registry import make_strategy  # noqa: E402
from strategies.score_reversion import ScoreReversion  # noqa: E402

# The real BTC/USDT 1h history, as `download_data.py` (defaults) writes it; or pass --data FILE.
DEFAULT_DATA = Path(__file__).resolve().parents[1] / "data_cache" / "binance_btcusdt_1h.csv.gz"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def per_bar_query_us(strategy: ScoreReversion, series, n: int = 20_000) -> dict[str, float]:
    """Median cost of the live path on real bars with the last fold's model."""
    fold = strategy.folds[-1]
    feats = IncrementalFeatures(strategy.spec)
    bars = list(series.take(slice(len(series) - n - 200, len(series))).iter_bars())
    for b in bars[:200]:
        feats.update(b.open, b.high, b.low, b.close, b.volume)
    t_feat, t_query = [], []
    for b in bars[200:]:
        t0 = time.perf_counter_ns()
        row = feats.update(b.open, b.high, b.low, b.close, b.volume)
        t1 = time.perf_counter_ns()
        signal, norm = fold.signal(row)
        fold.unusualness(float(norm))
        t2 = time.perf_counter_ns()
        t_feat.append(t1 - t0)
        t_query.append(t2 - t1)
    feat_us = statistics.median(t_feat) / 1000
    query_us = statistics.median(t_query) / 1000
    total = sorted(a + b for a, b in zip(t_feat, t_query))
    return {"features_us": feat_us, "query_us": query_us, "total_median_us": statistics.median(total) / 1000,
            "total_p99_us": total[int(0.99 * len(total))] / 1000}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--held-out-from", default="2022-01-01")
    ap.add_argument("--fee-bps", type=float, default=10.0)
    args = ap.parse_args()
    console = Console()
    series = load_bars(args.data)
    config = BrokerConfig(fee_bps=args.fee_bps)
    held_out = parse_time_ms(args.held_out_from)
    console.print(f"{args.data}: {len(series):,} bars; torch threads 1; seeds {args.seeds}")
    timing_rows, seed_rows = [], []
    first = None
    for seed in args.seeds:
        strategy = make_strategy("score", {"seed": seed}, series.timeframe_ms)
        oos_from = int(series.ts_ms[0]) + strategy.config.walk_forward.train_ms
        t0 = time.perf_counter()
        result = run_backtest(series, strategy, config, trade_from_ms=oos_from)
        wall = time.perf_counter() - t0
        train_s = sum(f.seconds for f in strategy.folds)
        timing_rows.append({"seed": seed, "folds": len(strategy.folds), "walk-forward s": round(wall, 1),
                            "of which training s": round(train_s, 1), "peak RSS MB": round(peak_rss_mb()),
                            "target": "≤ 60 s, ≤ 2048 MB"})
        report = build_score_report(strategy, series, config, result, oos_from)
        ho = run_backtest(series, ScoreReversion(strategy.config, fold_cache=strategy.fold_cache), config,
                          trade_from_ms=held_out)
        m, hm = result.metrics, ho.metrics
        seed_rows.append({"seed": seed, "OOS return %": round(100 * m["total_return"], 1),
                          "OOS Sharpe": _r(m["sharpe"]), "trades": m["trades"],
                          "IC next 1": _r(report["ic"]["score"]["next_1"], 4),
                          "IC next 24": _r(report["ic"]["score"]["next_24"], 4),
                          "held-out return %": round(100 * hm["total_return"], 1),
                          "held-out Sharpe": _r(hm["sharpe"]),
                          "no-fee return %": round(100 * report["without_fees"]["score"]["total_return"], 1)})
        if first is None:
            first = (strategy, result, report, ho)
    console.print(rows_table(timing_rows, title="Walk-forward speed (this machine, CPU)"))
    strategy, result, report, ho = first
    q = per_bar_query_us(strategy, series)
    console.print(rows_table([{k: round(v, 1) for k, v in q.items()} | {"target": "≤ 200 µs"}],
                             title="Live per-bar path (features + standardise + score + unusualness)"))
    cols = {"score": result.metrics, "buy & hold": result.buy_and_hold, "zscore": report["baselines"]["zscore"]}
    console.print(metrics_table(cols, title=f"Out of sample (seed {args.seeds[0]}), from the first fold, fee "
                                            f"{args.fee_bps:g} bps"))
    console.print(metrics_table({k.replace("buy_and_hold", "buy & hold"): v
                                 for k, v in report["without_fees"].items()}, title="Same, without fees"))
    console.print(rows_table([{"signal": k, **v} for k, v in report["ic"].items()],
                             title="Information coefficient (Spearman), out of sample"))
    held = {"score": ho.metrics, "buy & hold": ho.buy_and_hold,
            "zscore": run_backtest(series, _zscore(), config, trade_from_ms=held_out).metrics}
    console.print(metrics_table(held, title=f"Held-out span only (from {args.held_out_from}; never tuned on)"))
    console.print(rows_table(seed_rows, title="Spread over seeds (the seed moves results more than most settings)"))
    rets = [r["OOS return %"] for r in seed_rows]
    console.print(f"OOS return over seeds: mean {statistics.mean(rets):.1f} %, "
                  f"range {min(rets):.1f} … {max(rets):.1f} %")
    return 0


def _zscore():
    from strategies.zscore import ZScoreReversion

    return ZScoreReversion()


def _r(x, digits: int = 3):
    return None if x is None else round(float(x), digits)


if __name__ == "__main__":
    sys.exit(main())
