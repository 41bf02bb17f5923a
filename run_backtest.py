#!/usr/bin/env python3
"""Backtest a strategy on historical BTC candles and store the run in SQLite.

Fill timing: decisions at each bar's close, market orders fill at the next
bar's open (± slippage), fee_bps of notional per fill. See ../shared/DESIGN.md.

Examples:
  python run_backtest.py --data ../shared/data/btcusdt_1h_binance_2017-2026.csv.gz --strategy zscore --json
  python run_backtest.py --strategy buyhold --start 2022-01-01 --end 2023-01-01
"""
from __future__ import annotations

import os

# One BLAS/OpenMP thread, set before numpy loads: on 2 shared cores, two BLAS threads made the
# score model's numpy matmuls ~7x slower (1.6 ms -> 10.5 ms per 720-row fold block).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import logging
import sys
import traceback
from typing import TYPE_CHECKING, Any

from rich.console import Console

from cli.args import (CliParser, UsageError, add_money_flags, bounded_text, print_error, run_name,
                      time_text, timeframe)
from engine.backtest import ENGINES, BacktestResult, run_backtest
from engine.broker import BrokerConfig
from feeds.series import BarSeries, ms_to_timeframe, timeframe_to_ms
from feeds.default_data import resolve_data
from feeds.validation import DataError
from domain.redact import install_log_masking
from domain.strict_json import dumps_strict
from reporting.tables import metrics_table, rows_table
from reporting.timeparse import parse_time_ms
from store.db import DEFAULT_DB_URL, StoreError, init_db
from store.repository import RunSpec, create_run, mark_run, refuse_taken_name, save_backtest
from strategies.registry import FACTORIES, make_strategy

if TYPE_CHECKING:
    from strategies.score_reversion import ScoreReversion

log = logging.getLogger("run_backtest")


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="candle file (CSV, CSV.gz, Parquet, Feather). Default: the cached exchange "
                                  "download, else a fresh download, else synthetic data (labelled)")
    p.add_argument("--strategy", default=default_strategy(), choices=sorted(FACTORIES),
                   help="strategy to run (default: %(default)s)")
    p.add_argument("--engine", default="native", choices=ENGINES, help="native engine or backtrader (cross-check)")
    p.add_argument("--start", type=time_text("--start"),
                   help="first bar to load, inclusive (ISO date/time UTC or epoch s/ms/µs/ns)")
    p.add_argument("--end", type=time_text("--end"),
                   help="load bars before this time, exclusive (a bare date is its midnight UTC)")
    p.add_argument("--trade-from", type=time_text("--trade-from"),
                   help="bars before this time only warm the strategy up; trading and "
                                        "metrics start here (ISO or epoch ms)")
    p.add_argument("--timeframe", type=timeframe, help="resample to this coarser timeframe first (e.g. 4h, 1d)")
    add_money_flags(p)
    p.add_argument("--db", type=bounded_text(4096, "--db"), default=DEFAULT_DB_URL,
                   help="SQLAlchemy URL or SQLite file (default %(default)s)")
    p.add_argument("--name", type=run_name, help="optional unique run name (at most 200 characters)")
    p.add_argument("--upgrade-db", action="store_true",
                   help="migrate a --db made by an older version of this tool to the current schema first "
                        "(back it up before; without this flag an older database is refused)")
    p.add_argument("--json", action="store_true", help="print the run id and metrics as one JSON object, nothing else")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    add_strategy_options(p)
    return p


def default_strategy() -> str:
    return "score" if "score" in FACTORIES else "zscore"


def add_strategy_options(p: argparse.ArgumentParser) -> None:
    """Options of strategies that register extra flags (the score strategy)."""
    try:
        from strategies.score_cli import add_score_options
    except ImportError:
        return
    add_score_options(p)


def validate(args: argparse.Namespace) -> None:
    """Checks that involve several flags (each flag alone was checked by its argparse type)."""
    start = parse_time_ms(args.start, "--start")
    end = parse_time_ms(args.end, "--end")
    if start is not None and end is not None and end <= start:
        raise UsageError("--end must be after --start")
    if args.strategy == "score":
        from strategies.score_cli import score_config

        try:
            score_config({**vars(args), "timeframe_ms": 3_600_000})
        except ValueError as exc:
            raise UsageError(str(exc)) from None


def load_series(args: argparse.Namespace) -> BarSeries:
    start = parse_time_ms(args.start, "--start")
    end = parse_time_ms(args.end, "--end")
    series = resolve_data(args.data, quiet=args.json)
    if args.timeframe:
        from feeds.resample import resample

        try:
            series = resample(series, timeframe_to_ms(args.timeframe))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    series = series.between(start, end)
    if len(series) < 2:
        raise DataError(f"{series.source}: fewer than 2 bars between --start and --end")
    return series


def result_payload(run_id: str, args: argparse.Namespace, series: BarSeries, result: BacktestResult,
                   extra: dict[str, Any]) -> dict[str, Any]:
    gaps = series.gaps()
    return {
        "run_id": run_id,
        "strategy": args.strategy,
        "engine": args.engine,
        "data": {"source": series.source, "sha256": series.sha256, "bars": len(series),
                 "timeframe": ms_to_timeframe(series.timeframe_ms), "first_ts": int(series.ts_ms[0]),
                 "last_ts": int(series.ts_ms[-1]), "gaps": gaps.count, "missing_bars": gaps.missing_bars,
                 "notes": list(series.notes)},
        "period": {"start_ts": result.start_ts, "end_ts": result.end_ts},
        "fee_bps": args.fee_bps,
        "maker_fee_bps": args.fee_bps if args.maker_fee_bps is None else args.maker_fee_bps,
        "metrics": result.metrics.to_dict(),
        "buy_and_hold": result.buy_and_hold.to_dict(),
        **extra,
    }


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        validate(args)
    except UsageError as exc:
        return print_error(exc)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_masking()
    err = Console(stderr=True)
    try:
        trade_from = parse_time_ms(args.trade_from, "--trade-from")
        series = load_series(args)
        config = BrokerConfig(cash_quote=args.cash, fee_bps=args.fee_bps, slippage_bps=args.slippage_bps,
                              long_only=args.long_only, maker_fee_bps=args.maker_fee_bps)
        options = vars(args).copy()
        options["timeframe_ms"] = series.timeframe_ms
        strategy = make_strategy(args.strategy, options)
        params = {k: v for k, v in options.items() if k not in ("json", "db", "verbose", "upgrade_db")}
        params["config"] = _config_dict(strategy)
        stored_trade_from = trade_from
        trade_from = out_of_sample_start(strategy, series, trade_from)
        if trade_from is not None and trade_from > int(series.ts_ms[-1]):
            raise DataError(f"{series.source}: no bars to trade after the warm-up/training window "
                            f"(trading would start {_iso(trade_from)}, data ends {_iso(int(series.ts_ms[-1]))}); "
                            "load more history or use a shorter --train-days")
        db = init_db(args.db, upgrade=args.upgrade_db)
        if args.name is not None:
            refuse_taken_name(db, args.name)
        run_id = create_run(db, RunSpec(mode="backtest", strategy=args.strategy, initial_cash=args.cash,
                                        params=params, name=args.name, engine=args.engine, symbol="BTC/USDT",
                                        timeframe=ms_to_timeframe(series.timeframe_ms), data_source=series.source,
                                        data_hash=series.sha256, trade_from_ts=stored_trade_from))
        try:
            if not args.json:
                err.print(f"[dim]{series.source}: {len(series):,} bars, {series.gaps().describe()}[/dim]")
                for note in series.notes:
                    err.print(f"[yellow]note: {note}[/yellow]")
            if _is_score(strategy):
                from reporting.fold_progress import FoldProgress

                with FoldProgress(count_folds(series, strategy)) as progress:
                    strategy.on_fold = progress
                    result = run_backtest(series, strategy, config, engine=args.engine, trade_from_ms=trade_from)
                strategy.on_fold = None
            else:
                result = run_backtest(series, strategy, config, engine=args.engine, trade_from_ms=trade_from)
            extra = strategy_report(strategy, series, config, result, trade_from)
            report = {**result.baseline_report(), **extra}
            save_backtest(db, run_id, result.events, result.order_status, result.metrics.to_dict(), report,
                          model_versions=getattr(strategy, "model_versions", ()), start_ts=result.start_ts,
                          end_ts=result.end_ts)
        except BaseException as exc:
            mark_run(db, run_id, "failed", f"{type(exc).__name__}: {exc}")
            raise
    except (UsageError, DataError, StoreError, ValueError, OSError) as exc:  # OSError: e.g. an unreadable --data
        return print_error(exc)
    except KeyboardInterrupt:
        err.print("interrupted; the run is marked failed")
        return 130
    except Exception as exc:  # a bug: keep the message short, the traceback only with -v
        if args.verbose:
            traceback.print_exc()
        return print_error(f"{type(exc).__name__}: {exc}", status=1)
    payload = result_payload(run_id, args, series, result, extra)
    if args.json:
        print(dumps_strict(payload))
    else:
        print_human(payload)
    return 0


def _is_score(strategy: Any) -> bool:
    """isinstance(strategy, ScoreReversion) without importing torch for the other strategies:
    a ScoreReversion exists only once its module was imported."""
    module = sys.modules.get("strategies.score_reversion")
    return module is not None and isinstance(strategy, module.ScoreReversion)


def count_folds(series: BarSeries, strategy: "ScoreReversion") -> int:
    """Folds a walk-forward over these bars will start (the progress bar's total)."""
    wf = strategy.config.walk_forward
    anchor = int(series.ts_ms[0]) + wf.train_ms
    return max(1, (int(series.ts_ms[-1]) - anchor) // wf.retrain_ms + 1)


def strategy_report(strategy: Any, series: BarSeries, config: BrokerConfig, result: BacktestResult,
                    trade_from: int | None) -> dict[str, Any]:
    """Extra report sections: for the score strategy, baselines, no-fee runs, IC and folds."""
    if _is_score(strategy):
        from reporting.score_report import build_score_report

        return build_score_report(strategy, series, config, result, trade_from)
    return {}


def out_of_sample_start(strategy: Any, series: BarSeries, trade_from: int | None) -> int | None:
    """Measure from the first bar the strategy can trade (the score strategy's first fold), never earlier."""
    first = strategy.first_decision_ts(int(series.ts_ms[0]))
    if first is None:
        return trade_from
    return first if trade_from is None else max(trade_from, first)

def _iso(ms: int) -> str:
    import pandas as pd

    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M UTC")


def _config_dict(strategy: Any) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    cfg = getattr(strategy, "config", None)
    if hasattr(cfg, "to_dict"):
        return cfg.to_dict()
    return asdict(cfg) if cfg is not None and is_dataclass(cfg) else {}


def print_human(payload: dict[str, Any]) -> None:
    console = Console()
    columns = {payload["strategy"]: payload["metrics"], "buy & hold": payload["buy_and_hold"]}
    for name, metrics in payload.get("baselines", {}).items():
        if name != "buy_and_hold":
            columns[name] = metrics
    span = "out-of-sample bars, " if payload.get("folds") is not None else ""
    title = f"{payload['data']['source']} — {span}fee {payload['fee_bps']:g} bps per fill"
    console.print(metrics_table(columns, title=title))
    if payload["metrics"].get("equity_floor_hit"):
        console.print(f"[red]equity reached zero at {_iso(payload['metrics']['equity_floor_ts'])}: the run stopped "
                      "trading there and closed its position at the next open[/red]")
    if payload.get("without_fees"):
        nf = {k.replace("buy_and_hold", "buy & hold"): v for k, v in payload["without_fees"].items()}
        console.print(metrics_table(nf, title="Same bars without fees"))
    if payload.get("ic"):
        console.print(rows_table([{"signal": k, **v} for k, v in payload["ic"].items()],
                                 title="Information coefficient (Spearman, out of sample)"))
    if payload.get("forecast"):
        fc = payload["forecast"]
        console.print(rows_table([fc], title=f"Forecast of ln(O[t+1+h]/O[t+1]), h = {fc['horizon_bars']} bars: IC, "
                                             f"{fc['interval']:.0%} interval coverage, pinball loss / climatology"))
    folds = payload.get("folds") or []
    if folds:
        shown = folds if len(folds) <= 24 else folds[:12] + folds[-12:]
        rows = [{"fold": f["fold"], "trade block": f["trade"], "val loss": f["val_loss"], "τ": f["threshold"],
                 "swd/ref": None if not f["swd"] or not f["swd_ref"] else f["swd"] / f["swd_ref"],
                 "trades": f["trades"], "return %": f["return_pct"]} for f in shown]
        title = "Walk-forward folds" + (f" (first and last 12 of {len(folds)}; all in --json and the DB)"
                                        if len(shown) < len(folds) else "")
        console.print(rows_table(rows, title=title))
    console.print(f"[dim]stored as run {payload['run_id']}; inspect with: python inspect_trades.py show "
                  f"{payload['run_id'][:8]}[/dim]")


if __name__ == "__main__":
    sys.exit(main())
