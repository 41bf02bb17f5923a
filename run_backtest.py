#!/usr/bin/env python3
"""Backtest a strategy on historical BTC candles and store the run in SQLite.

Fill timing: decisions at each bar's close, market orders fill at the next
bar's open (± slippage), fee_bps of notional per fill.

Examples:
  python run_backtest.py --data btcusdt_1h.csv.gz --strategy zscore --json
  python run_backtest.py --data btcusdt_1h.csv.gz --strategy zscore --param window=20 --param entry_z=1.5
  python run_backtest.py --strategy score --list-params
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
from typing import Any

from rich.console import Console
from sqlalchemy.exc import DBAPIError

from app.backtest import BacktestOutcome, BacktestRequest
from app.stored_backtest import run_and_store
from app.data import Market, load_window
from app.registry import SPECS, get_spec
from cli.args import (CliParser, UsageError, add_money_flags, bounded_text, http_url, interrupted_status,
                      print_db_error, print_error, run_name, sigterm_as_interrupt, symbol, time_text, timeframe)
from cli.params import add_param_option, add_score_flags, describe_params, given_params
from domain.redact import install_log_masking
from domain.strict_json import dumps_strict
from engine.backtest import ENGINES
from engine.broker import BrokerConfig
from domain.times import TimeRange, ms_to_text, parse_time_ms, timeframe_name
from feeds.errors import FatalFeedError, FeedError
from feeds.validation import DataError
from reporting.fold_progress import FoldProgress
from reporting.tables import metrics_table, rows_table
from store.db import DEFAULT_DB_URL, StoreError, init_db
from strategies.params import ParamError

log = logging.getLogger("run_backtest")


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="candle file (CSV, CSV.gz, Parquet, Feather). Default: the cached exchange "
                                  "download, else a fresh download, else synthetic data (labelled)")
    p.add_argument("--strategy", default="score", choices=sorted(SPECS),
                   help="strategy to run (default: %(default)s)")
    p.add_argument("--engine", default="native", choices=ENGINES, help="native engine or backtrader (cross-check)")
    p.add_argument("--start", type=time_text("--start"),
                   help="first bar to load, inclusive (ISO date/time UTC or epoch s/ms/µs/ns)")
    p.add_argument("--end", type=time_text("--end"),
                   help="load bars before this time, exclusive (a bare date is its midnight UTC)")
    p.add_argument("--trade-from", type=time_text("--trade-from"),
                   help="bars before this time only warm the strategy up; trading and "
                                        "metrics start here (ISO or epoch ms)")
    p.add_argument("--timeframe", type=timeframe,
                   help="resample to this coarser timeframe first (e.g. 4h, 1d); with --exchange/--symbol: "
                        "the timeframe to download (default 1h)")
    p.add_argument("--exchange", help="backtest on this ccxt exchange's candles instead of --data: downloaded "
                                      "into data_cache/ where missing (e.g. binance, bybit, kraken)")
    p.add_argument("--symbol", type=symbol, help="market symbol for --exchange (default BTC/USDT)")
    p.add_argument("--exchange-url", type=http_url, help="the exchange's REST base URL (a proxy or a test server)")
    add_money_flags(p)
    p.add_argument("--db", type=bounded_text(4096, "--db"), default=DEFAULT_DB_URL,
                   help="SQLAlchemy URL or SQLite file (default %(default)s)")
    p.add_argument("--upgrade-db", action="store_true",
                   help="migrate a --db made by an older version of this tool to the current schema first "
                        "(back it up before; without this flag an older database is refused)")
    p.add_argument("--name", type=run_name, help="optional unique run name (at most 200 characters)")
    p.add_argument("--json", action="store_true", help="print the run id and metrics as one JSON object, nothing else")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    add_param_option(p)
    add_score_flags(p)
    return p


def validate(args: argparse.Namespace) -> None:
    """Checks that involve several flags (each flag alone was checked by its argparse type)."""
    try:
        TimeRange.checked(parse_time_ms(args.start, "--start"), parse_time_ms(args.end, "--end"),
                          ("--start", "--end"))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    make_request(args)  # parameter names, types and the strategy's own checks, before anything is loaded


def make_request(args: argparse.Namespace) -> BacktestRequest:
    """The run the flags describe; unknown parameter names or bad values are a UsageError (exit 2)."""
    try:
        params = given_params(args, args.strategy)
        broker = BrokerConfig(cash_quote=args.cash, fee_bps=args.fee_bps, slippage_bps=args.slippage_bps,
                              long_only=args.long_only, maker_fee_bps=args.maker_fee_bps)
        request = BacktestRequest(args.strategy, params, broker,
                                  engine=args.engine, trade_from_ms=parse_time_ms(args.trade_from, "--trade-from"))
        spec = get_spec(args.strategy)
        spec.build(spec.resolve(params), 3_600_000)  # the config's own checks (e.g. max_hold_bars >= 1)
    except (ParamError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    return request


def load_series(args: argparse.Namespace):
    try:
        market = None
        if args.exchange or args.symbol:
            market = Market(args.exchange or "binance", args.symbol or "BTC/USDT", args.exchange_url)
        return load_window(args.data, parse_time_ms(args.start, "--start"), parse_time_ms(args.end, "--end"),
                           args.timeframe, quiet=args.json, market=market)
    except DataError:
        raise
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def result_payload(run_id: str, args: argparse.Namespace, outcome: BacktestOutcome) -> dict[str, Any]:
    series, result = outcome.series, outcome.result
    extra = {k: v for k, v in outcome.report.items() if k not in ("buy_and_hold", "buy_and_hold_inputs")}
    gaps = series.gaps()
    return {
        "run_id": run_id,
        "strategy": args.strategy,
        "engine": args.engine,
        "data": {"source": series.source, "sha256": series.sha256, "bars": len(series),
                 "timeframe": timeframe_name(series.timeframe_ms), "first_ts": int(series.ts_ms[0]),
                 "last_ts": int(series.ts_ms[-1]), "gaps": gaps.count, "missing_bars": gaps.missing_bars,
                 "notes": list(series.notes)},
        "period": {"start_ts": result.start_ts, "end_ts": result.end_ts},
        "fee_bps": args.fee_bps,
        "maker_fee_bps": args.fee_bps if args.maker_fee_bps is None else args.maker_fee_bps,
        "params": outcome.params,
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
    db = None
    try:
        request = make_request(args)
        if args.list_params:
            print(describe_params(get_spec(args.strategy).params()))
            return 0
        series = load_series(args)
        db = init_db(args.db, upgrade=args.upgrade_db)
        if not args.json:
            err.print(f"[dim]{series.source}: {len(series):,} bars, {series.gaps().describe()}[/dim]")
            for note in series.notes:
                err.print(f"[yellow]note: {note}[/yellow]")
        progress = _FoldLine()
        try:
            with sigterm_as_interrupt():  # from here a run row exists: a stop marks it failed, as Ctrl-C does
                run_id, outcome = run_and_store(db, request, series, name=args.name, progress=progress,
                                                extra={"data": args.data, "start": args.start, "end": args.end,
                                                       "timeframe": args.timeframe})
        finally:
            progress.done()
    except (UsageError, DataError, StoreError, ValueError, OSError, FatalFeedError) as exc:  # OSError: an unreadable --data
        return print_error(exc)
    except FeedError as exc:  # --exchange could not be reached (after retries)
        return print_error(f"exchange unavailable: {exc}", status=3)
    except DBAPIError as exc:  # the database failed during the run (the run is rolled back)
        return print_db_error(exc)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated)
        err.print(f"{exc or 'interrupted'}; the run is marked failed")
        return interrupted_status(exc)
    except Exception as exc:  # a bug: keep the message short, the traceback only with -v
        if args.verbose:
            traceback.print_exc()
        return print_error(f"{type(exc).__name__}: {exc}", status=1)
    finally:
        if db is not None:
            db.dispose()  # close the pool now: an in-process caller (a test, a notebook) keeps no connection
    payload = result_payload(run_id, args, outcome)
    if args.json:
        print(dumps_strict(payload))
    else:
        print_human(payload)
    return 0


class _FoldLine:
    """Starts the rich fold progress bar once the run knows how many models it will fit."""

    def __init__(self) -> None:
        self.line: FoldProgress | None = None

    def __call__(self, total: int) -> FoldProgress:
        self.line = FoldProgress(total).__enter__()
        return self.line

    def done(self) -> None:
        if self.line is not None:
            self.line.__exit__(None, None, None)


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
        console.print(f"[red]equity reached zero at {ms_to_text(payload['metrics']['equity_floor_ts'], zone=True)}: the run stopped "
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
