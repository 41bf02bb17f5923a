#!/usr/bin/env python3
"""Evaluation protocol of the score model, written down as code (issue: choose on training data only).

1. SELECT on BTC 1h 2018-08 → 2021-12 only: the bars loaded end before 2022-01-01,
   so no training target, threshold or model ever sees a 2022 price. Every
   variant of ``VARIANTS`` (parameters named as the strategy's config/CLI
   fields, so a sweep runner can take the grid over) runs with the selection
   seeds; the chosen one has the highest mean after-fee Sharpe among variants
   with at least ``--min-trades`` trades (mean over seeds).
2. REPORT on 2022-01 → end with 3 seeds, nothing changed: after-fee return and
   Sharpe, IC (Spearman of the signal with the variant's own target
   ln(O_{t+1+h}/O_{t+1})), coverage of the 80 % interval, pinball loss of the
   interval ends against climatology (the trailing year's quantiles of the same
   target, known at t), beside buy-and-hold and the z-score on the same bars.
   Side line: the same at 2 bps per fill (a maker-like fee; the real maker/taker
   schedule is built elsewhere, until then a lower fee_bps stands in), with the
   cost-aware threshold recomputed for that fee.
3. ENSEMBLE: the chosen variant with --ensemble 3 on 3 disjoint seed sets; does
   averaging narrow the spread across seeds, and what does it cost in time?
A losing result is printed as it is.

Usage: python bench/model_eval.py [--data FILE] [--variants NAME ...] [--json OUT]
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402

from engine.backtest import run_backtest  # noqa: E402
from engine.broker import BrokerConfig  # noqa: E402
from feeds.files import load_bars  # noqa: E402
from feeds.resample import resample  # noqa: E402
from feeds.series import BarSeries, timeframe_to_ms  # noqa: E402
from reporting.score_report import forecast_calibration, forward_open_returns, spearman  # noqa: E402
from reporting.tables import rows_table  # noqa: E402
from reporting.timeparse import parse_time_ms  # noqa: E402
from app.registry import get_spec  # noqa: E402
from strategies.score_reversion import ScoreReversion  # noqa: E402
from strategies.zscore import ZScoreReversion  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "btcusdt_1h_binance_2017-2026.csv.gz"
SELECT_END = "2022-01-01"  # bars before this only, for choosing
REPORT_FROM = "2022-01-01"

# The grid (parameter names are ScoreReversionConfig / CLI fields). "timeframe" is a data choice.
VARIANTS: dict[str, dict[str, Any]] = {
    "state (signal, q0.99)": {"model_target": "state"},
    "fc h1 tweedie m0.25": {"model_target": "forecast", "horizon_bars": 1, "cost_margin_pct": 0.25},
    "fc h4 tweedie m0.5": {"model_target": "forecast", "horizon_bars": 4, "cost_margin_pct": 0.5},
    "fc h24 tweedie m0.5": {"model_target": "forecast", "horizon_bars": 24, "cost_margin_pct": 0.5},
    "fc h24 tweedie m1.0": {"model_target": "forecast", "horizon_bars": 24, "cost_margin_pct": 1.0},
    "fc h24 tweedie σ0.3 m0.5": {"model_target": "forecast", "horizon_bars": 24, "cost_margin_pct": 0.5,
                                 "forecast_sigma": 0.3},
    "fc h24 m0.5 sized": {"model_target": "forecast", "horizon_bars": 24, "cost_margin_pct": 0.5,
                          "size_by_confidence": True},
    "4h fc h6 tweedie m0.5": {"timeframe": "4h", "model_target": "forecast", "horizon_bars": 6,
                              "cost_margin_pct": 0.5},
}


def bars_for(series_1h: BarSeries, timeframe: str | None) -> BarSeries:
    return series_1h if timeframe in (None, "1h") else resample(series_1h, timeframe_to_ms(timeframe))


def strategy_for(params: dict[str, Any], series: BarSeries, seed: int, fee_bps: float,
                 ensemble: int = 1) -> ScoreReversion:
    opts = {k: v for k, v in params.items() if k != "timeframe"}
    opts = {"train_days": 365.0, "retrain_days": 30.0} | opts | {"seed": seed, "ensemble": ensemble}
    spec = get_spec("score")
    given = spec.with_broker(opts, long_only=False, fee_bps=fee_bps, slippage_bps=0.0)
    return spec.build(spec.resolve(given), series.timeframe_ms)


def evaluate(params: dict[str, Any], series: BarSeries, seed: int, fee_bps: float, trade_from: int | None,
             ensemble: int = 1, cache: dict | None = None) -> tuple[dict[str, Any], ScoreReversion]:
    """One run: metrics, IC against its own target, and (forecast variants) interval calibration."""
    strat = strategy_for(params, series, seed, fee_bps, ensemble)
    if cache is not None:
        strat.walk.cache = cache
    first = strat.first_decision_ts(int(series.ts_ms[0]))
    start = first if trade_from is None else max(first, trade_from)
    t0 = time.perf_counter()
    res = run_backtest(series, strat, BrokerConfig(fee_bps=fee_bps), trade_from_ms=start)
    wall = time.perf_counter() - t0
    wf = strat.config.walk_forward
    h = wf.horizon_bars if wf.is_forecast else 1
    y = forward_open_returns(series, h)
    sig = pd.Series([s.signal for s in res.events.signals], index=[s.ts_ms for s in res.events.signals])
    sig = sig[sig.index >= start]
    yy = y.reindex(sig.index)
    ok = yy.notna().to_numpy()
    m = res.metrics
    row = {"return %": 100 * _num(m["total_return"]), "Sharpe": m["sharpe"], "trades": m["trades"],
           "max DD %": 100 * _num(m["max_drawdown"]), "IC": spearman(sig.to_numpy()[ok], yy.to_numpy()[ok]),
           "coverage": None, "pinball/clim": None, "seconds": wall,
           "bh return %": 100 * _num(res.buy_and_hold["total_return"]), "bh Sharpe": res.buy_and_hold["sharpe"]}
    if wf.is_forecast and strat.forecasts.ts_ms:
        cal = forecast_calibration(strat, series, start)
        row["coverage"], row["pinball/clim"] = cal["coverage"], cal["pinball_vs_climatology"]
    return row, strat


def baselines(series: BarSeries, fee_bps: float, trade_from: int) -> dict[str, Any]:
    z = run_backtest(series, ZScoreReversion(), BrokerConfig(fee_bps=fee_bps), trade_from_ms=trade_from)
    return {"zscore return %": 100 * z.metrics["total_return"], "zscore Sharpe": z.metrics["sharpe"],
            "bh return %": 100 * z.buy_and_hold["total_return"], "bh Sharpe": z.buy_and_hold["sharpe"]}


def _num(x: Any) -> float:
    return math.nan if x is None else float(x)


def _r(x: Any, d: int = 3) -> Any:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), d)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--select-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--report-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--min-trades", type=int, default=100)
    ap.add_argument("--fee-bps", type=float, default=10.0)
    ap.add_argument("--maker-fee-bps", type=float, default=2.0, help="side line: a maker-like fee per fill")
    ap.add_argument("--ensemble", type=int, default=3, help="members per fold in the ensemble comparison (0 = skip)")
    ap.add_argument("--variants", nargs="*", help="subset of variant names (default all)")
    ap.add_argument("--json", help="also write every number to this JSON file")
    ap.add_argument("--chosen", help="skip the selection and report this variant (one chosen by an earlier "
                                     "selection run of this script)")
    args = ap.parse_args()
    console = Console(stderr=False, width=200)
    full = load_bars(args.data)
    select_series = full.between(None, parse_time_ms(SELECT_END))
    report_from = parse_time_ms(REPORT_FROM)
    names = args.variants or list(VARIANTS)
    out: dict[str, Any] = {"selection": {}, "report": {}, "ensemble": {}}

    # 1. selection, training span only
    rows: list[dict[str, Any]] = []
    if args.chosen:
        names = []
    with Progress(console=Console(stderr=True), transient=True) as prog:
        task = prog.add_task("selection runs", total=len(names) * len(args.select_seeds))
        for name in names:
            params = VARIANTS[name]
            series = bars_for(select_series, params.get("timeframe"))
            runs = []
            for seed in args.select_seeds:
                runs.append(evaluate(params, series, seed, args.fee_bps, None)[0])
                prog.advance(task)
            agg = {k: statistics.mean(_num(r[k]) for r in runs) for k in ("return %", "Sharpe", "trades", "IC")}
            agg["coverage"] = runs[0]["coverage"]
            agg["pinball/clim"] = runs[0]["pinball/clim"]
            rows.append({"variant": name, **{k: _r(v) for k, v in agg.items()},
                         "bh return %": _r(runs[0]["bh return %"]), "s/run": _r(statistics.mean(r["seconds"] for r in runs), 1)})
            out["selection"][name] = runs
    if rows:
        console.print(rows_table(rows, title=f"SELECTION 2018-08 → 2021-12, fee {args.fee_bps:g} bps, seeds "
                                         f"{args.select_seeds} (choose here only)"))
    eligible = [r for r in rows if (r["trades"] or 0) >= args.min_trades] or rows
    chosen = args.chosen or max(
        eligible, key=lambda r: -1e9 if r["Sharpe"] is None or math.isnan(r["Sharpe"]) else r["Sharpe"])["variant"]
    console.print(f"chosen on the selection span: [bold]{chosen}[/bold] (highest mean Sharpe with ≥ "
                  f"{args.min_trades} trades)")
    out["chosen"] = chosen

    # 2. report on 2022 → end, 3 seeds, at the taker fee and the maker-like side line
    params = VARIANTS[chosen]
    series = bars_for(full, params.get("timeframe"))
    report_rows = []
    for fee in (args.fee_bps, args.maker_fee_bps):
        base = baselines(series, fee, report_from)
        for seed in args.report_seeds:
            row, _ = evaluate(params, series, seed, fee, report_from)
            report_rows.append({"fee bps": fee, "seed": seed, **{k: _r(v) for k, v in row.items() if k != "seconds"},
                                "zscore return %": _r(base["zscore return %"]),
                                "zscore Sharpe": _r(base["zscore Sharpe"])})
        state = VARIANTS["state (signal, q0.99)"]
        if chosen != "state (signal, q0.99)":
            row, _ = evaluate(state, bars_for(full, None), args.report_seeds[0], fee, report_from)
            report_rows.append({"fee bps": fee, "seed": f"{args.report_seeds[0]} (state model, for comparison)",
                                **{k: _r(v) for k, v in row.items() if k != "seconds"},
                                "zscore return %": _r(base["zscore return %"]),
                                "zscore Sharpe": _r(base["zscore Sharpe"])})
        if args.json:  # keep what is done so far
            Path(args.json).write_text(json.dumps(out | {"report": report_rows}, default=str, indent=1))
    out["report"] = report_rows
    console.print(rows_table(report_rows, title=f"HELD-OUT REPORT 2022-01 → end: chosen '{chosen}' (nothing "
                                                f"changed after selection); {args.maker_fee_bps:g} bps = maker-like "
                                                "stand-in until the maker/taker schedule lands"))

    # 3. ensembles: does averaging K seeds narrow the spread?
    if args.ensemble > 1:
        ens_rows = []
        for k, seed0 in enumerate(args.report_seeds):
            row, _ = evaluate(params, series, seed0 * args.ensemble, args.fee_bps, report_from, ensemble=args.ensemble)
            ens_rows.append({"members": f"seeds {seed0 * args.ensemble}..{seed0 * args.ensemble + args.ensemble - 1}",
                             **{key: _r(v) for key, v in row.items()}})
        singles = [r for r in report_rows if r["fee bps"] == args.fee_bps and isinstance(r["seed"], int)]
        spread_single = max(r["return %"] for r in singles) - min(r["return %"] for r in singles)
        spread_ens = max(r["return %"] for r in ens_rows) - min(r["return %"] for r in ens_rows)
        out["ensemble"] = {"rows": ens_rows, "single_spread_pct": spread_single, "ensemble_spread_pct": spread_ens}
        console.print(rows_table(ens_rows, title=f"ENSEMBLE of {args.ensemble} per fold, held-out span, "
                                                 f"fee {args.fee_bps:g} bps"))
        console.print(f"return spread across 3 runs: single seed {spread_single:.1f} pp, ensemble "
                      f"{spread_ens:.1f} pp")
    if args.json:
        Path(args.json).write_text(json.dumps(out, default=str, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
