"""The ``inspect_trades.py`` command line: argparse, dispatch, and one-line errors.

Exit status: 0 success, 1 an error the user can fix (printed as one line on
stderr, never a traceback), 2 bad command-line usage (also one line), 130 Ctrl-C.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, Callable, Sequence

from sqlalchemy.exc import SQLAlchemyError

from cli.args import CliParser, UsageError, finite_float, number, print_error
from inspect_tools.errors import InspectError
from inspect_tools.export import FORMATS
from inspect_tools.queries import open_reader
from inspect_tools.timefmt import time_arg
from inspect_tools.views import DEFAULT_LIMIT
from store.db import DEFAULT_DB_URL, StoreError, error_line

PROG = "inspect_trades.py"
EPILOG = """examples:
  inspect_trades.py runs
  inspect_trades.py show 3f2a                      # a unique id prefix, or the run's name
  inspect_trades.py trades 3f2a --side long --from 2024-01-01 --to 2024-04-01 --min-pnl 0
  inspect_trades.py trades 3f2a --format csv > trades.csv
  inspect_trades.py equity my-paper-run --tail --limit 20
  inspect_trades.py equity 3f2a --format parquet -o equity.parquet
  inspect_trades.py orders 3f2a --reason entry
  inspect_trades.py compare 3f2a 9b1c --baselines
  inspect_trades.py report 3f2a -o report.html --png equity.png
  inspect_trades.py sweeps
  inspect_trades.py sweep zs-grid --sort total_return
  inspect_trades.py report zs-grid -o sweep.html        # a sweep's name: the sweep report

The database is opened read-only: safe to run against a paper trader's live file."""


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(
        prog=PROG, description="Inspect stored backtest and paper runs: list, show, export, compare, report.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default=DEFAULT_DB_URL,
                        help=f"SQLAlchemy URL or SQLite file path, opened read-only (default: {DEFAULT_DB_URL})")
    # --db may also follow the subcommand; SUPPRESS keeps the top-level value when it does not.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=argparse.SUPPRESS, help="SQLAlchemy URL or SQLite file path (read-only)")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def sub(name: str, handler: str, help_text: str) -> argparse.ArgumentParser:
        p = subs.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(handler=handler)  # "module.function" in inspect_tools, imported by main when chosen
        return p

    p = sub("runs", "commands.cmd_runs", "List all runs, newest first: id, name, mode, strategy, symbol, timeframe, "
                                         "period, status, trades, return, Sharpe, max drawdown.")
    p.add_argument("--mode", choices=("backtest", "paper"), help="only runs of this mode")
    p.add_argument("--strategy", help="only runs of this strategy (e.g. zscore)")
    p.add_argument("--status", help="only runs with this status (running, completed, failed, stopped)")
    _format(p)
    _limit(p, tail=False)

    p = sub("show", "commands.cmd_show", "One run in full: parameters, data source and hash, code version, metrics "
                                         "beside buy-and-hold and the z-score baseline, model versions per fold.")
    _run(p)
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="table (default) or json (every stored field, for scripts)")
    _limit(p, tail=False)

    p = sub("trades", "commands.cmd_trades", "A run's closed trades (round trips), filtered.")
    _run(p)
    p.add_argument("--side", choices=("long", "short"), help="only long or only short trades")
    _time_range(p, "entry (fill) time")
    p.add_argument("--min-pnl", type=finite_float, metavar="QUOTE", help="only trades with net P&L ≥ this (quote currency)")
    p.add_argument("--max-pnl", type=finite_float, metavar="QUOTE", help="only trades with net P&L ≤ this (quote currency)")
    p.add_argument("--reason", action="append", metavar="REASON",
                   help="only these exit reasons (e.g. signal, stop, max_hold); repeat or comma-separate")
    _format(p)
    _limit(p)

    p = sub("equity", "commands.cmd_equity", "A run's equity marked at each bar close, with cash, position and the "
                                             "drawdown from the running peak. The export for SQL-minded users: "
                                             "--format csv|json|parquet (every bar, exact values).")
    _run(p)
    _time_range(p, "bar open time")
    p.add_argument("--format", choices=FORMATS + ("parquet",), default="table",
                   help="table (default, truncated to --limit), csv or json (always every row), or parquet "
                        "(binary: -o FILE or a redirected stdout)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the parquet export to this file")
    _limit(p)

    p = sub("orders", "commands.cmd_orders", "A run's orders with the score (signal) and threshold behind each "
                                             "decision, its status and fill.")
    _run(p)
    p.add_argument("--side", choices=("buy", "sell"), help="only buys or only sells (the fill's side for orders "
                                                          "sized at the fill)")
    _time_range(p, "decision bar's open time")
    p.add_argument("--reason", action="append", metavar="REASON",
                   help="only these order reasons (e.g. entry, signal, stop); repeat or comma-separate")
    p.add_argument("--status", action="append", metavar="STATUS",
                   help="only these statuses (filled, cancelled, expired, rejected, submitted); repeat or comma-separate")
    _format(p)
    _limit(p)

    p = sub("compare", "commands.cmd_compare", "Metrics of several runs side by side.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run ids, unique id prefixes or names")
    p.add_argument("--baselines", action="store_true",
                   help="add each run's stored buy-and-hold and z-score baseline columns (identical ones once)")
    _format(p)

    p = sub("sweeps", "sweep_views.cmd_sweeps", "List all sweeps, newest first: name, strategy, status, runs, "
                                                "best Sharpe, Deflated Sharpe Ratio, PBO.")
    _format(p)
    _limit(p, tail=False)

    p = sub("sweep", "sweep_views.cmd_sweep", "One sweep's runs (swept parameters, data, seed, metrics), sorted by "
                                              "a metric, best first, with its DSR and PBO.")
    p.add_argument("sweep", metavar="SWEEP", help="sweep name (or id)")
    p.add_argument("--sort", default="sharpe", metavar="METRIC",
                   help="metric to sort by, best first (default sharpe; e.g. total_return, final_equity, trades)")
    _format(p)
    _limit(p, tail=False)

    p = sub("report", "report_command.cmd_report",
            "Write a self-contained HTML report (plotly, works offline) and/or a PNG of equity and drawdown. "
            "Given a sweep's name: the sweep report (heatmap, Sharpe distribution, best vs buy-and-hold, DSR and PBO).")
    p.add_argument("run", metavar="RUN", help="run id, unique id prefix or run name; or a sweep name")
    p.add_argument("-o", "--output", metavar="FILE.html", help="HTML report to write")
    p.add_argument("--png", metavar="FILE.png", help="static PNG of equity and drawdown vs buy-and-hold to write")
    p.add_argument("--png-size", type=_size_arg, default=(1200, 700), metavar="WxH",
                   help="PNG size in pixels (default: 1200x700)")
    p.add_argument("--max-points", type=_non_negative_int, default=5_000, metavar="N",
                   help="thin each chart line to about N points, keeping extremes (0: all; default: 5000)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        return _fail(str(exc), 2)
    try:
        handler = _handler(args.handler)
        with open_reader(args.db) as reader:
            handler(args, reader, sys.stdout)
        sys.stdout.flush()
        return 0
    except BrokenPipeError:  # e.g. `... --format csv | head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (InspectError, StoreError) as exc:
        return _fail(str(exc))
    except SQLAlchemyError as exc:
        return _fail(f"database error: {error_line(exc)}")
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as exc:  # a bug: still one line, with a way to get the traceback
        if os.environ.get("INSPECT_DEBUG"):
            raise
        return _fail(f"unexpected {type(exc).__name__}: {_first_line(str(exc))} "
                     "(set INSPECT_DEBUG=1 for the traceback)")


def _handler(name: str) -> Callable[[argparse.Namespace, Any, Any], None]:
    """The chosen command's function: a report imports no table code (rich), a listing no charts."""
    module, _, function = name.rpartition(".")
    return getattr(importlib.import_module(f"inspect_tools.{module}"), function)


def _fail(message: str, status: int = 1) -> int:
    return print_error(message, status, prefix=f"{PROG}: error: ")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "(no message)"


def _run(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run id, unique id prefix, or run name")


def _format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="table (default, truncated to --limit), csv or json (always every row)")


def _limit(p: argparse.ArgumentParser, tail: bool = True) -> None:
    p.add_argument("--limit", type=_non_negative_int, default=DEFAULT_LIMIT, metavar="N",
                   help=f"table rows to show (default: {DEFAULT_LIMIT}; 0: all); csv/json are never truncated")
    if tail:
        p.add_argument("--tail", action="store_true", help="show the last --limit rows instead of the first")


def _time_range(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--from", dest="start", type=time_arg, metavar="WHEN",
                   help=f"from this {what}, inclusive: a date (2024-03-01), date-time (2024-03-01T12:00, UTC "
                        "unless an offset is given) or epoch timestamp (s/ms/µs/ns by magnitude)")
    p.add_argument("--to", dest="end", type=time_arg, metavar="WHEN",
                   help=f"before this {what}, exclusive (a bare date is its midnight UTC, as --end elsewhere)")


_non_negative_int = number(int, lo=0, hi=10**9)


def _size_arg(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels, e.g. 1200x700, got {text!r}") from None
    if not (100 <= width <= 10_000 and 100 <= height <= 10_000):
        raise argparse.ArgumentTypeError(f"PNG size must be 100..10000 px per side, got {text!r}")
    return width, height
_size_arg.numeric = True  # type: ignore[attr-defined]  # found by the every-numeric-flag test
