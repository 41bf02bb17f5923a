"""One function per subcommand: query through a StoreReader, print a table or an export.

Each takes the parsed arguments, the reader and the output stream, and raises
InspectError for anything the user should fix (``cli.main`` prints it in one line).
"""
from __future__ import annotations

import argparse
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from inspect_tools.errors import InspectError
from inspect_tools.export import with_iso_times, write_json, write_rows
from inspect_tools.formatting import failure_lines, format_value, metric_kind, metric_specs, run_label, short_id
from inspect_tools.outfile import write_atomically
from inspect_tools.queries import OrderFilter, StoreReader, TradeFilter
from inspect_tools.series_export import write_equity_csv, write_equity_json, write_equity_parquet
from inspect_tools.summary import (baselines, comparison_columns, interruption, orders_stored, parameter_pairs,
                                   period_text, report_extras, run_list_row)
from inspect_tools.tables import key_values, listing, make_console, metrics_table, print_listing
from domain.times import TimeRange, ms_to_iso, ms_to_text
from store.db import delete_run_hint
from inspect_tools.views import (EQUITY_COLUMNS, FOLD_COLUMNS, ORDER_COLUMNS,
                                 ORDER_FIELDS, ORDER_TIMES, RUN_COLUMNS, RUN_FIELDS, TRADE_COLUMNS, TRADE_FIELDS,
                                 TRADE_TIMES, Column)

Row = dict[str, Any]


def cmd_runs(args: argparse.Namespace, reader: StoreReader, out: TextIO) -> None:
    rows = [run_list_row(r) for r in reader.runs(mode=args.mode, strategy=args.strategy, status=args.status)]
    if args.format != "table":
        write_rows(out, args.format, RUN_FIELDS, rows)
        return
    footer = [escape(line) for line in failure_lines(rows)]  # an error's text is not markup
    if any(r["return_source"] == "equity" for r in rows):
        footer.append("[dim]return of a run without final metrics (still running) is its last marked equity[/dim]")
    print_listing(make_console(out), RUN_COLUMNS, rows, noun="runs", limit=args.limit, footer=footer)


def cmd_show(args: argparse.Namespace, reader: StoreReader, out: TextIO) -> None:
    run = reader.resolve(args.run)
    folds = reader.model_versions(run["id"])
    counts = reader.counts(run["id"])
    owner = reader.owner(run["id"])
    interrupted = interruption({**run, **(owner or {})})
    if args.format == "json":
        write_json(out, {"run": run, "counts": counts, "model_versions": folds, "owner": owner,
                         "interrupted": interrupted})
        return
    console = make_console(out)
    console.print(key_values(f"Run {run['id']}", _overview(run, counts, owner, interrupted)))
    console.print()
    console.print(key_values("Provenance", [("data source", run["data_source"] or ""),
                                            ("data hash", run["data_hash"] or ""),
                                            ("code version", run["code_version"] or "")]))
    console.print()
    params = parameter_pairs(run["params"])
    console.print(key_values("Parameters", [(k, format_value("raw", v)) for k, v in params])
                  if params else "Parameters: none stored")
    console.print()
    _print_metrics(console, run)
    extras = report_extras(run)
    for key, value in extras.items():
        console.print()
        _print_extra(console, key, value, args.limit)
    console.print()
    if folds:
        table, hidden = listing(FOLD_COLUMNS, folds, title="Model versions (walk-forward folds)", limit=args.limit)
        console.print(table)
        if hidden:
            console.print(Text(f"… {hidden} more folds (use --limit 0 or --format json)", style="dim"))
        checks = [(f"fold {f['fold_index']}", format_value("auto", f["sample_check"])) for f in folds
                  if f["sample_check"]]
        if checks:
            console.print(key_values("Sample checks", checks[: args.limit or None]))
    else:
        console.print("Model versions: none stored (not a walk-forward model run)")


def cmd_trades(args: argparse.Namespace, reader: StoreReader, out: TextIO) -> None:
    run = reader.resolve(args.run)
    if args.min_pnl is not None and args.max_pnl is not None and args.min_pnl > args.max_pnl:
        raise InspectError(f"--min-pnl {args.min_pnl} is above --max-pnl {args.max_pnl}")
    flt = TradeFilter(when=time_range(args), side=args.side, min_pnl=args.min_pnl, max_pnl=args.max_pnl,
                      reasons=split_values(args.reason))
    rows = reader.trades(run["id"], flt)
    if args.format != "table":
        write_rows(out, args.format, TRADE_FIELDS, with_iso_times(rows, TRADE_TIMES))
        return
    footer = []
    if rows:
        pnl = [r["pnl"] for r in rows]
        wins = sum(p > 0 for p in pnl)
        footer.append(f"{len(rows):,} trades · net P&L {sum(pnl):,.2f} · fees {sum(r['fees'] for r in rows):,.2f}"
                      f" · win rate {100.0 * wins / len(rows):.1f} %")
    print_listing(make_console(out), TRADE_COLUMNS, rows, noun="trades", title=_title("Trades", run),
                  limit=args.limit, tail=args.tail, footer=footer)


def cmd_equity(args: argparse.Namespace, reader: StoreReader, out: TextIO) -> None:
    run = reader.resolve(args.run)
    if args.format != "table":  # exports: straight from the stored columns, every row
        values = reader.equity_values(run["id"], time_range(args), initial_cash=run["initial_cash"])
        if args.format == "csv":
            write_equity_csv(out, values)
        elif args.format == "json":
            write_equity_json(out, values)
        else:
            _write_binary(args, out, lambda stream: write_equity_parquet(stream, values))
        return
    rows = reader.equity(run["id"], time_range(args), initial_cash=run["initial_cash"])
    footer = []
    if rows:
        first, last = rows[0], rows[-1]
        footer.append(f"{len(rows):,} bars · equity {first['equity']:,.2f} → {last['equity']:,.2f}"
                      f" · deepest drawdown {100.0 * min(r['drawdown'] for r in rows):.2f} %")
    print_listing(make_console(out), EQUITY_COLUMNS, rows, noun="rows", title=_title("Equity", run),
                  limit=args.limit, tail=args.tail, footer=footer)


def _write_binary(args: argparse.Namespace, out: TextIO, write: Any) -> None:
    """Binary exports go to -o FILE (atomically), else to a redirected stdout, never to a terminal."""
    if getattr(args, "output", None):
        size = write_atomically(args.output, lambda tmp: write(tmp))
        out.write(f"wrote {args.output} ({size / 1e6:.1f} MB)\n")
        return
    if out.isatty():
        raise InspectError("--format parquet writes binary: give -o FILE.parquet or redirect stdout to a file")
    out.flush()
    buffer = getattr(out, "buffer", None)
    if buffer is None:
        raise InspectError("--format parquet needs -o FILE.parquet here")
    write(buffer)
    buffer.flush()


def cmd_orders(args: argparse.Namespace, reader: StoreReader, out: TextIO) -> None:
    run = reader.resolve(args.run)
    if not orders_stored(run):  # an empty listing would read as "it placed no orders"
        raise InspectError(f"run {short_id(run['id'])} is a sweep trial stored without its orders and fills "
                           "(run_sweep.py keeps them with --store-orders); its trades, equity and metrics are stored")
    flt = OrderFilter(when=time_range(args), side=args.side, reasons=split_values(args.reason),
                      statuses=split_values(args.status))
    rows = reader.orders(run["id"], flt)
    if args.format != "table":
        write_rows(out, args.format, ORDER_FIELDS, with_iso_times(rows, ORDER_TIMES))
        return
    shown = [{**r, "shown_side": r["side"] or r["fill_side"]} for r in rows]
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    footer = [" · ".join(f"{n:,} {s}" for s, n in sorted(statuses.items()))] if rows else []
    print_listing(make_console(out), ORDER_COLUMNS, shown, noun="orders", title=_title("Orders", run),
                  limit=args.limit, tail=args.tail, footer=footer)


def cmd_compare(args: argparse.Namespace, reader: StoreReader, out: TextIO) -> None:
    runs: list[Row] = []
    for ref in args.runs:
        run = reader.resolve(ref)
        if all(r["id"] != run["id"] for r in runs):
            runs.append(run)
    if args.format == "json":
        write_json(out, [{"id": r["id"], "name": r["name"], "mode": r["mode"], "strategy": r["strategy"],
                          "symbol": r["symbol"], "timeframe": r["timeframe"], "status": r["status"],
                          "start_ts": r["start_ts"], "end_ts": r["end_ts"], "start_time": ms_to_iso(r["start_ts"]),
                          "end_time": ms_to_iso(r["end_ts"]), "metrics": r["metrics"] or {},
                          "baselines": (r["report"] or {}).get("baselines") or {}} for r in runs])
        return
    columns = comparison_columns(runs, with_baselines=args.baselines)
    if args.format == "csv":
        specs = metric_specs({k for _, metrics in columns for k in metrics})
        rows = [{"metric": s.key, **{label: metrics.get(s.key) for label, metrics in columns}} for s in specs]
        write_rows(out, "csv", ["metric", *[label for label, _ in columns]], rows)
        return
    fields = (("id", lambda r: short_id(r["id"])), ("strategy", lambda r: r["strategy"]),
              ("mode", lambda r: r["mode"]), ("symbol", lambda r: r["symbol"] or ""),
              ("timeframe", lambda r: r["timeframe"] or ""),
              ("period", lambda r: period_text(r["start_ts"], r["end_ts"])), ("status", lambda r: r["status"]))
    padding = [""] * (len(columns) - len(runs))  # baseline columns have no run fields
    header_rows = [(name, [str(get(r)) for r in runs] + padding) for name, get in fields]
    table = metrics_table(columns, title="Compare", header_rows=header_rows)
    console = make_console(out)
    if table is None:
        console.print("no metrics stored for these runs (still running or failed?)")
    else:
        console.print(table)


def time_range(args: argparse.Namespace) -> TimeRange:
    try:
        return TimeRange.from_bounds(args.start, args.end)
    except ValueError as exc:
        raise InspectError(str(exc)) from None


def split_values(values: list[str] | None) -> tuple[str, ...]:
    """Repeated and comma-separated option values → a tuple ('stop,signal' → ('stop', 'signal'))."""
    return tuple(v.strip() for item in values or () for v in item.split(",") if v.strip())


def _title(what: str, run: Row) -> str:
    return f"{what} · {run_label(run)} ({short_id(run['id'])}) · {run['strategy']} {run['mode']}"


def _overview(run: Row, counts: dict[str, int], owner: Row | None = None,
              interrupted: str | None = None) -> list[tuple[str, str]]:
    status = run["status"]
    if interrupted:
        status = f"interrupted (stored as running; {interrupted})"
    elif run["status"] == "running" and owner:
        status = f"running (pid {owner['owner_pid']} on {owner['owner_host']})"
    pairs = [("name", run["name"] or ""), ("mode", run["mode"]), ("strategy", run["strategy"]),
             ("engine", run["engine"]), ("status", status)]
    if run["error"]:
        pairs.append(("error", run["error"]))
    if run["mode"] == "backtest" and run["name"] and (interrupted or run["status"] == "failed"):
        pairs.append(("its name", f"held until deleted: {delete_run_hint(run['id'])}"))
    pairs += [("symbol", run["symbol"] or ""), ("exchange", run["exchange"] or ""),
              ("timeframe", run["timeframe"] or ""), ("period (UTC)", f"{ms_to_text(run['start_ts'])} → "
                                                                       f"{ms_to_text(run['end_ts'])}"),
              ("trade from", ms_to_text(run["trade_from_ts"])), ("last bar", ms_to_text(run["last_bar_ts"])),
              ("bars processed", f"{run['bars_processed']:,}"),
              ("initial cash", format_value("money", run["initial_cash"])),
              ("created / updated", f"{run['created_at']} / {run['updated_at']}"),
              ("stored rows", " · ".join(f"{n:,} {name}" for name, n in counts.items()))]
    if not orders_stored(run):
        pairs.append(("orders, fills", "not stored: a sweep trial (run_sweep.py --store-orders keeps them)"))
    return pairs


def _print_metrics(console: Console, run: Row) -> None:
    columns = [("strategy", run["metrics"] or {}), *baselines(run).items()]
    title = "Metrics" + (" beside the baselines" if len(columns) > 1 else "")
    table = metrics_table(columns, title=title)
    if table is None:
        console.print("Metrics: none stored yet (a paper run gets them when it stops)")
        return
    console.print(table)
    if len(columns) == 1:
        console.print("[dim]no baselines stored with this run (report.baselines)[/dim]")


def _print_extra(console: Console, key: str, value: Any, limit: int) -> None:
    """Free-form report entries: a list of flat dicts as a table, a flat dict as fields, else JSON."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        keys = list(dict.fromkeys(k for v in value for k in v))
        cols = [Column(k, k, metric_kind(k)) for k in keys]
        table, hidden = listing(cols, value, title=f"report.{key}", limit=limit)
        console.print(table)
        if hidden:
            console.print(Text(f"… {hidden} more (use show --format json)", style="dim"))
    elif isinstance(value, dict) and value:
        console.print(key_values(f"report.{key}", [(k, format_value(metric_kind(k), v)) for k, v in value.items()]))
    else:
        console.print(key_values("report", [(key, format_value("auto", value))]))
