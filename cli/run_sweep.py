"""Run one strategy over a parameter grid or an Optuna search, data files and seeds, in parallel.

Every run is stored (only this process writes to the database, one transaction
per finished run). Restarting with the same --name resumes: configurations
already stored are skipped by a hash of their full configuration and the data
file's content. The summary reports the best configuration with its Deflated
Sharpe Ratio and the Probability of Backtest Overfitting.

Examples:
  python run_sweep.py --data btc_1h.csv.gz --strategy zscore --grid window=20,50,100 \\
      --grid entry_z=1.5:3:0.5 --grid fee_bps=5,10 --name zs-grid --workers 2
  python run_sweep.py --data btc_1h.csv.gz --strategy zscore --search optuna --trials 40 \\
      --space entry_z=1:3 --space window=10:200 --name zs-tpe --select-until 2023-01-01
  python run_sweep.py --data btc_1h.csv.gz --strategy score --grid threshold_quantile=0.98,0.99 \\
      --seeds 0 1 2 --scheduler tcp://10.0.0.5:8786 --name score-seeds --json

Grid ranges START:STOP:STEP include STOP when it lands on the grid (1.5:3:0.5 is
1.5, 2, 2.5, 3). Parameter names are those of run_backtest.py --param (list them
with run_backtest.py --strategy NAME --list-params) plus fee_bps and slippage_bps.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import DBAPIError

from app.registry import SPECS, get_spec
from app.sweep.driver import SearchSpec, SweepRequest
from app.sweep.executors import default_workers
from app.sweep.plan import all_params, parse_grid, parse_space
from app.sweep.progress import SweepProgress
from app.sweep.session import run_sweep
from cli.args import (CliParser, UsageError, add_money_flags, bounded_text, interrupted_status, number,
                      print_db_error, print_error, run_name, sigterm_as_interrupt, time_text)
from cli.params import split_assignments
from domain.redact import install_log_masking
from domain.strict_json import dumps_strict
from domain.times import parse_time_ms
from inspect_tools.formatting import failure_lines
from inspect_tools.sweep_views import selection_lines
from feeds.validation import DataError
from store.db import DEFAULT_DB_URL, StoreError
from strategies.params import ParamError

SEED = number(int, lo=0, hi=2**32 - 1)


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(prog="run_sweep.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", required=True, metavar="FILE", help="candle files (each is swept)")
    p.add_argument("--strategy", default="zscore", choices=sorted(SPECS), help="strategy (default %(default)s)")
    p.add_argument("--grid", action="append", default=[], metavar="PARAM=V1,V2,…",
                   help="values of a parameter (repeatable); a range START:STOP:STEP is also accepted")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="fix a parameter for every run (repeatable)")
    p.add_argument("--search", choices=("optuna",), help="search instead of a grid (Optuna TPE, ask/tell)")
    p.add_argument("--trials", type=number(int, lo=1, hi=10**6), help="configurations the search tries (with --search)")
    p.add_argument("--space", action="append", default=[], metavar="PARAM=LOW:HIGH[:log]",
                   help="search range of a parameter (repeatable; integers stay integers)")
    p.add_argument("--search-seed", type=SEED, default=0, help="seed of the Optuna sampler (default 0)")
    p.add_argument("--seeds", type=SEED, nargs="+", metavar="SEED",
                   help="repeat every configuration with these model seeds (strategies with a seed parameter)")
    p.add_argument("--workers", type=number(int, lo=1, hi=4096), default=None,
                   help=f"local worker processes (default: the cores available, here {default_workers()})")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="run on an existing Dask cluster instead (its workers must run this code)")
    p.add_argument("--threads", type=number(int, lo=1, hi=1024), default=1,
                   help="torch/BLAS threads per worker (default 1)")
    p.add_argument("--retries", type=number(int, lo=0, hi=100), default=2,
                   help="resubmissions of a task whose worker died (default 2)")
    p.add_argument("--db", type=bounded_text(4096, "--db"), default=DEFAULT_DB_URL,
                   help="SQLAlchemy URL or SQLite file (default %(default)s)")
    p.add_argument("--name", type=run_name, help="sweep name (at most 200 characters); the same name resumes "
                                                 "(default: a new name from the time)")
    p.add_argument("--select-until", type=time_text("--select-until"), metavar="TS",
                   help="choose the best on bars before TS only, then report it on the bars after TS")
    p.add_argument("--store-orders", action="store_true",
                   help="also store every trial's orders and fills (default: metrics, trades and per-bar series; "
                        "the out-of-sample run of --select-until is always stored in full)")
    p.add_argument("--metric", default="sharpe", help="what 'best' means (default sharpe; also sortino, calmar, "
                                                      "total_return, cagr, final_equity, profit_factor)")
    add_money_flags(p)  # --fee-bps / --slippage-bps apply unless swept with --grid fee_bps=… / slippage_bps=…
    p.add_argument("--json", action="store_true", help="print the sweep summary as one JSON object, nothing else")
    p.add_argument("-v", "--verbose", action="store_true", help="tracebacks of unexpected errors")
    return p


def make_request(args: argparse.Namespace) -> SweepRequest:
    """The sweep the flags describe; names and values are checked here, before any file or DB is opened."""
    if args.workers is not None and args.scheduler:
        raise UsageError("give --workers (local processes) or --scheduler (a Dask cluster), not both")
    spec = get_spec(args.strategy)
    names = all_params(spec.params())
    fixed_text = split_assignments(args.param)
    fixed = {}
    for name, text in fixed_text.items():
        real = spec.aliases.get(name, name)
        if real not in names:
            raise ParamError(f"--param: unknown parameter {name!r}; valid: {', '.join(sorted(names))}")
        fixed[real] = names[real].parse(text)
    grid = parse_grid(args.grid, names, spec.aliases)
    search = None
    if args.search:
        if args.grid:
            raise UsageError("--grid and --search exclude each other (fix values with --param)")
        if not args.trials or not args.space:
            raise UsageError("--search optuna needs --trials N (>= 1) and at least one --space PARAM=LOW:HIGH")
        search = SearchSpec("optuna", args.trials, tuple(parse_space(args.space, names, spec.aliases)),
                            args.search_seed)
    elif args.trials or args.space:
        raise UsageError("--trials and --space need --search optuna")
    until = parse_time_ms(args.select_until, "--select-until")
    name = args.name or time.strftime("sweep-%Y%m%d-%H%M%S", time.gmtime())
    return SweepRequest(name=name, strategy=args.strategy, data=tuple(args.data), grid=grid, fixed=fixed,
                        search=search, seeds=tuple(dict.fromkeys(args.seeds)) if args.seeds else None,
                        cash_quote=args.cash, fee_bps=args.fee_bps, maker_fee_bps=args.maker_fee_bps,
                        slippage_bps=args.slippage_bps,
                        long_only=args.long_only, select_until_ms=until, metric=args.metric, threads=args.threads,
                        max_attempts=args.retries + 1, store_orders=args.store_orders)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        request = make_request(args)
    except (UsageError, ParamError) as exc:
        return print_error(exc)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    install_log_masking()
    try:
        with sigterm_as_interrupt(), SweepProgress(request.metric) as progress:
            summary = run_sweep(request, args.db, workers=args.workers, scheduler=args.scheduler,
                                retries=args.retries, progress=progress)
    except (UsageError, ParamError, DataError, StoreError, ConnectionError, ValueError, OSError) as exc:
        return print_error(exc)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated)
        print(f"{exc or 'interrupted'}: finished runs are stored; rerun with the same --name to resume",
              file=sys.stderr)
        return interrupted_status(exc)
    except DBAPIError as exc:  # the store failed mid-sweep: finished runs are stored, a rerun resumes
        return print_db_error(exc)
    except Exception as exc:  # a bug: one line, the traceback only with -v
        if args.verbose:
            traceback.print_exc()
        return print_error(f"{type(exc).__name__}: {exc}", status=1)
    if args.json:
        print(dumps_strict(summary))
    else:
        print_human(summary)
    # Every run failed (a bad --select-until, a strategy error): the sweep produced nothing to use.
    return 1 if summary["runs"] and not any(r["status"] == "completed" for r in summary["runs"]) else 0


def print_human(summary: dict[str, Any]) -> None:
    console = Console()
    metric = summary["metric"]
    runs = sorted(summary["runs"], key=lambda r: -(r["metrics"].get(metric) or float("-inf")))
    table = Table(title=f"sweep {summary['sweep']} · {summary['strategy']} · {len(runs)} runs, best {metric} first")
    keys = list(dict.fromkeys(k for r in runs for k in r["params"]))
    for col in ["run", *keys, "seed", metric, "total return", "trades", "status"]:
        table.add_column(col)
    for r in runs[:20]:
        m = r["metrics"]
        table.add_row(r["run_id"][:8], *[str(r["params"].get(k, "")) for k in keys], str(r["seed"] or ""),
                      _num(m.get(metric)), _num(m.get("total_return"), pct=True), str(m.get("trades", "")),
                      r["status"])
    console.print(table)
    if len(runs) > 20:
        console.print(f"[dim]… {len(runs) - 20} more: inspect_trades.py sweep {summary['sweep']}[/dim]")
    for line in failure_lines(summary["runs"]):  # not wrapped: a path in an error stays one piece to copy
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    for line in selection_lines(summary):
        console.print(line, highlight=False, markup=False)


def _num(value: Any, pct: bool = False) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    return f"{100 * value:.2f} %" if pct else f"{value:.3f}"

