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
   Side line: the same under a Binance-USDM-like schedule (2 bps maker / 5 bps
   taker, the broker's real maker/taker fees), the cost-aware threshold
   recomputed for it.
2b. ENTRY ORDERS under two fee schedules: 10 bps taker only (maker = taker,
   the default) and a Binance-USDM-like 2 bps maker / 5 bps taker. For each
   schedule the entry variant (market, or passive limits with an offset and an
   expiry, ``ENTRY_VARIANTS``) is chosen on the selection span with the chosen
   model variant, then reported on the held-out span with the report seeds,
   side by side. The cost-aware threshold uses the schedule (maker fee for a
   passive entry). Trained folds are shared between runs that differ only in
   fees or entry orders (the model does not depend on them).
3. ENSEMBLE: the chosen variant with --ensemble 3 on 3 disjoint seed sets; does
   averaging narrow the spread across seeds, and what does it cost in time?
A losing result is printed as it is.

Usage: python bench/model_eval.py [--data FILE] [--variants NAME ...] [--json OUT]
       python bench/model_eval.py --chosen "fc h24 tweedie σ0.3 m0.5" --entries-only --select-seeds 0 1
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
from domain.series import BarSeries  # noqa: E402
from domain.times import timeframe_ms as timeframe_to_ms  # noqa: E402
from reporting.score_report import forecast_calibration, forward_open_returns, spearman  # noqa: E402
from reporting.tables import rows_table  # noqa: E402
from domain.times import parse_time_ms  # noqa: E402
from app.registry import get_spec  # noqa: E402
from strategies.score_reversion import ScoreReversion  # noqa: E402
from strategies.zscore import ZScoreReversion  # noqa: E402

# The real BTC/USDT 1h history, as `download_data.py` (defaults) writes it; or pass --data FILE.
DEFAULT_DATA = Path(__file__).resolve().parents[1] / "data_cache" / "binance_btcusdt_1h.csv.gz"
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


# Entry-order variants (ScoreReversionConfig / CLI fields), chosen per fee schedule on the selection span.
ENTRY_VARIANTS: dict[str, dict[str, Any]] = {
    "market": {"entry_order": "market"},
    "passive 10bps x4": {"entry_order": "passive", "passive_offset_bps": 10.0, "passive_expiry_bars": 4},
    "passive 25bps x4": {"entry_order": "passive", "passive_offset_bps": 25.0, "passive_expiry_bars": 4},
    "passive 10bps x12": {"entry_order": "passive", "passive_offset_bps": 10.0, "passive_expiry_bars": 12},
    "passive 0bps x2": {"entry_order": "passive", "passive_offset_bps": 0.0, "passive_expiry_bars": 2},
}
# (taker bps, maker bps)
SCHEDULES: dict[str, tuple[float, float]] = {"10 bps taker only": (10.0, 10.0), "USDM-like 2 maker / 5 taker": (5.0, 2.0)}
MODEL_FREE_KEYS = ("entry_order", "passive_offset_bps", "passive_expiry_bars", "cost_margin_pct",
                   "size_by_confidence", "exit_on_reversal", "stop_loss_pct", "max_hold_bars", "unusual_gate")


def model_key(params: dict[str, Any], seed: int, span: str) -> tuple:
    """Runs with equal keys train identical folds (fees and entry rules do not enter the model)."""
    return (span, seed, tuple(sorted((k, str(v)) for k, v in params.items() if k not in MODEL_FREE_KEYS)))


def bars_for(series_1h: BarSeries, timeframe: str | None) -> BarSeries:
    return series_1h if timeframe in (None, "1h") else resample(series_1h, timeframe_to_ms(timeframe))


def strategy_for(params: dict[str, Any], series: BarSeries, seed: int, fee_bps: float,
                 ensemble: int = 1, maker_fee_bps: float | None = None) -> ScoreReversion:
    opts = {k: v for k, v in params.items() if k != "timeframe"}
    opts = {"train_days": 365.0, "retrain_days": 30.0} | opts | {"seed": seed, "ensemble": ensemble}
    spec = get_spec("score")
    given = spec.with_broker(opts, long_only=False, fee_bps=fee_bps, slippage_bps=0.0, maker_fee_bps=maker_fee_bps)
    return spec.build(spec.resolve(given), series.timeframe_ms)


def evaluate(params: dict[str, Any], series: BarSeries, seed: int, fee_bps: float, trade_from: int | None,
             ensemble: int = 1, cache: dict | None = None,
             maker_fee_bps: float | None = None) -> tuple[dict[str, Any], ScoreReversion]:
    """One run: metrics, IC against its own target, and (forecast variants) interval calibration.
    ``fee_bps`` is the taker fee, ``maker_fee_bps`` the resting-limit fee (None = the taker fee)."""
    strat = strategy_for(params, series, seed, fee_bps, ensemble, maker_fee_bps)
    if cache is not None:
        strat.walk.cache = cache
    first = strat.first_decision_ts(int(series.ts_ms[0]))
    start = first if trade_from is None else max(first, trade_from)
    t0 = time.perf_counter()
    res = run_backtest(series, strat, BrokerConfig(fee_bps=fee_bps, maker_fee_bps=maker_fee_bps), trade_from_ms=start)
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
           "exposure %": 100 * _num(getattr(m, "exposure", None)),
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
    ap.add_argument("--maker-fee-bps", type=float, default=2.0,
                    help="side line: the maker fee of the USDM-like schedule (taker: --usdm-taker-fee-bps)")
    ap.add_argument("--usdm-taker-fee-bps", type=float, default=5.0, help="side line: its taker fee")
    ap.add_argument("--entries-only", action="store_true",
                    help="skip the 10-vs-2 bps fee side line and the ensembles: run only the entry-order "
                         "selection and report under the two fee schedules (2b)")
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
    if args.chosen:
        console.print(f"model variant given by --chosen: [bold]{chosen}[/bold]")
    else:
        console.print(f"chosen on the selection span: [bold]{chosen}[/bold] (highest mean Sharpe with ≥ "
                      f"{args.min_trades} trades)")
    out["chosen"] = chosen

    params = VARIANTS[chosen]
    series = bars_for(full, params.get("timeframe"))
    if args.entries_only:
        out["entries"] = entry_orders(params, select_series, series, report_from, args, console)
        if args.json:
            Path(args.json).write_text(json.dumps(out, default=str, indent=1))
        return 0

    # 2. report on 2022 → end, 3 seeds, at the taker-only fee and the USDM-like maker/taker side line
    #    (the strategy's own entry settings, i.e. the defaults unless the variant names them)
    report_rows = []
    for fee, maker in ((args.fee_bps, args.fee_bps), (args.usdm_taker_fee_bps, args.maker_fee_bps)):
        base = baselines(series, fee, report_from)
        for seed in args.report_seeds:
            row, _ = evaluate(params, series, seed, fee, report_from, maker_fee_bps=maker)
            report_rows.append({"fee bps": fee, "maker bps": maker, "seed": seed, **{k: _r(v) for k, v in row.items() if k != "seconds"},
                                "zscore return %": _r(base["zscore return %"]),
                                "zscore Sharpe": _r(base["zscore Sharpe"])})
        state = VARIANTS["state (signal, q0.99)"]
        if chosen != "state (signal, q0.99)":
            row, _ = evaluate(state, bars_for(full, None), args.report_seeds[0], fee, report_from,
                              maker_fee_bps=maker)
            report_rows.append({"fee bps": fee, "maker bps": maker, "seed": f"{args.report_seeds[0]} (state model, for comparison)",
                                **{k: _r(v) for k, v in row.items() if k != "seconds"},
                                "zscore return %": _r(base["zscore return %"]),
                                "zscore Sharpe": _r(base["zscore Sharpe"])})
        if args.json:  # keep what is done so far
            Path(args.json).write_text(json.dumps(out | {"report": report_rows}, default=str, indent=1))
    out["report"] = report_rows
    console.print(rows_table(report_rows, title=f"HELD-OUT REPORT 2022-01 → end: chosen '{chosen}' (nothing "
                                                f"changed after selection); side line: {args.maker_fee_bps:g} bps maker / "
                                                f"{args.usdm_taker_fee_bps:g} bps taker"))

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


def entry_orders(params: dict[str, Any], select_series_1h: BarSeries, series: BarSeries, report_from: int,
                 args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """2b: per fee schedule, choose the entry variant on the selection span, report it held-out."""
    caches: dict[tuple, dict] = {}
    sel_series = bars_for(select_series_1h, params.get("timeframe"))
    out: dict[str, Any] = {"selection": [], "chosen": {}, "report": []}
    with Progress(console=Console(stderr=True), transient=True) as prog:
        n = len(SCHEDULES) * (len(ENTRY_VARIANTS) * len(args.select_seeds) + 2 * len(args.report_seeds))
        task = prog.add_task("entry-order runs", total=n)
        for sched, (taker, maker) in SCHEDULES.items():
            rows = []
            for name, entry in ENTRY_VARIANTS.items():
                p = params | entry
                runs = []
                for seed in args.select_seeds:
                    cache = caches.setdefault(model_key(p, seed, "select"), {})
                    runs.append(evaluate(p, sel_series, seed, taker, None, cache=cache, maker_fee_bps=maker)[0])
                    prog.advance(task)
                rows.append({"schedule": sched, "entry": name,
                             **{k: _r(statistics.mean(_num(r[k]) for r in runs))
                                for k in ("return %", "Sharpe", "trades", "max DD %")}})
            out["selection"] += rows
            eligible = [r for r in rows if (r["trades"] or 0) >= args.min_trades] or rows
            best = max(eligible, key=lambda r: -1e9 if r["Sharpe"] is None else r["Sharpe"])["entry"]
            out["chosen"][sched] = best
            base = baselines(series, taker, report_from)
            # the chosen entry; market entries beside it for comparison only (not a choice)
            for entry in dict.fromkeys([best, "market"]):
                p = params | ENTRY_VARIANTS[entry]
                for seed in args.report_seeds:
                    cache = caches.setdefault(model_key(p, seed, "report"), {})
                    row, _ = evaluate(p, series, seed, taker, report_from, cache=cache, maker_fee_bps=maker)
                    prog.advance(task)
                    out["report"].append({"schedule": sched, "entry": entry if entry == best else
                                          f"{entry} (comparison)", "seed": seed,
                                          **{k: _r(v) for k, v in row.items() if k != "seconds"},
                                          "zscore return %": _r(base["zscore return %"]),
                                          "zscore Sharpe": _r(base["zscore Sharpe"])})
            if args.json:  # keep what is done so far
                Path(args.json).write_text(json.dumps({"entries": out}, default=str, indent=1))
    console.print(rows_table(out["selection"], title=f"ENTRY SELECTION 2018-08 → 2021-12, seeds {args.select_seeds} "
                                                     "(choose here only)"))
    console.print("chosen per schedule: " + "; ".join(f"{k}: {v}" for k, v in out["chosen"].items()))
    console.print(rows_table(out["report"], title="HELD-OUT 2022-01 → end, each schedule with its chosen entry "
                                                  "(nothing changed after selection)"))
    summary = []
    for sched, entry in ((s_, e_) for s_ in SCHEDULES for e_ in dict.fromkeys(
            [out["chosen"][s_], "market (comparison)" if out["chosen"][s_] != "market" else "market"])):
        rs = [r for r in out["report"] if r["schedule"] == sched and r["entry"] == entry]
        summary.append({"schedule": sched, "entry": entry,
                        "mean return %": _r(statistics.mean(_num(r["return %"]) for r in rs)),
                        "mean Sharpe": _r(statistics.mean(_num(r["Sharpe"]) for r in rs)),
                        "min Sharpe": _r(min(_num(r["Sharpe"]) for r in rs)),
                        "bh Sharpe": rs[0]["bh Sharpe"], "zscore Sharpe": rs[0]["zscore Sharpe"]})
    out["summary"] = summary
    console.print(rows_table(summary, title="SIDE BY SIDE (held-out, mean over report seeds)"))
    return out


if __name__ == "__main__":
    sys.exit(main())
