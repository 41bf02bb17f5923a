"""Sweeps in the inspector: the list of sweeps, one sweep's runs sorted by a metric, and the HTML report's data.

A sweep's summary (best run, Deflated Sharpe Ratio, PBO, held-out result) is
stored by ``run_sweep.py`` when it finishes; an interrupted sweep has none yet.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, TextIO

from rich.markup import escape

from inspect_tools.errors import InspectError
from inspect_tools.export import write_json, write_rows
from inspect_tools.formatting import failure_lines, metric_kind
from inspect_tools.queries import StoreReader
from inspect_tools.tables import make_console, print_listing
from inspect_tools.views import Column

Row = dict[str, Any]
SWEEP_COLUMNS = (
    Column("name", "name"), Column("strategy", "strategy"), Column("status", "status"),
    Column("completed", "runs", "int"), Column("failed", "failed", "int"), Column("best_sharpe", "best Sharpe", "ratio"),
    Column("deflated_sharpe", "DSR", "ratio"), Column("pbo", "PBO", "ratio"), Column("created_at", "created (UTC)"),
)
SWEEP_FIELDS = ("id", "name", "strategy", "status", "completed", "failed", "metric", "best_run_id", "best_sharpe",
                "deflated_sharpe", "pbo", "created_at", "updated_at")
RUN_METRICS = ("sharpe", "total_return", "max_drawdown", "trades", "final_equity")


def sweep_list_row(sweep: Row) -> Row:
    summary = sweep.get("summary") or {}
    best = summary.get("best") or {}
    return {**sweep, "metric": summary.get("metric"), "best_run_id": best.get("run_id"),
            "best_sharpe": (best.get("metrics") or {}).get("sharpe"),
            "deflated_sharpe": summary.get("deflated_sharpe"), "pbo": summary.get("pbo")}


def resolve_sweep(reader: StoreReader, ref: str) -> Row:
    sweep = reader.sweep(ref)
    if sweep is None:
        raise InspectError(f"no sweep is named {ref!r} (list them with: inspect_trades.py sweeps)")
    return sweep


def sweep_table(reader: StoreReader, sweep: Row, sort: str) -> tuple[list[Column], list[Row]]:
    """Columns (swept parameters, data, seed, metrics) and rows sorted by ``sort``, best first, failed last."""
    runs = reader.sweep_runs(sweep["id"])
    names = list(dict.fromkeys(k for r in runs for k in (r["params"] or {})))
    rows = []
    for r in runs:
        metrics = r["metrics"] or {}
        row = {"run_id": r["id"], "short_id": r["id"][:8], "status": r["status"], "error": r["error"],
               "data": os.path.basename(r["data_path"]), "data_path": r["data_path"], "seed": r["seed"],
               **{f"param:{k}": v for k, v in (r["params"] or {}).items()},
               **{k: metrics.get(k) for k in RUN_METRICS}}
        if sort not in RUN_METRICS:
            row[sort] = metrics.get(sort)
        rows.append(row)
    if rows and sort not in rows[0]:
        raise InspectError(f"unknown metric {sort!r} to sort by")
    low_is_good = sort in ("max_drawdown_days", "max_drawdown_bars", "volatility")
    rows.sort(key=lambda r: (not isinstance(r.get(sort), (int, float)),
                             (r.get(sort) or 0) * (1 if low_is_good else -1)))
    columns = [Column("short_id", "run"), *[Column(f"param:{n}", n, "auto") for n in names]]
    if len({r["data"] for r in rows}) > 1:
        columns.append(Column("data", "data"))
    if any(r["seed"] is not None for r in rows):
        columns.append(Column("seed", "seed", "int"))
    shown = list(dict.fromkeys([sort, *RUN_METRICS]))
    columns += [Column(k, k, metric_kind(k), signed=k == "total_return") for k in shown]
    columns.append(Column("status", "status"))
    return columns, rows


def cmd_sweeps(args: argparse.Namespace, reader: StoreReader, out: TextIO) -> None:
    rows = [sweep_list_row(s) for s in reader.sweeps()]
    if args.format != "table":
        write_rows(out, args.format, SWEEP_FIELDS, rows)
        return
    print_listing(make_console(out), SWEEP_COLUMNS, rows, noun="sweeps", limit=args.limit)


def cmd_sweep(args: argparse.Namespace, reader: StoreReader, out: TextIO) -> None:
    sweep = resolve_sweep(reader, args.sweep)
    columns, rows = sweep_table(reader, sweep, args.sort)
    if args.format == "json":
        write_json(out, {"sweep": {k: sweep[k] for k in ("id", "name", "strategy", "status", "spec", "summary",
                                                         "created_at", "updated_at")}, "runs": rows})
        return
    if args.format == "csv":
        write_rows(out, "csv", ["run_id", *[c.key for c in columns if c.key != "short_id"], "error"], rows)
        return
    summary = sweep.get("summary") or {}
    # errors are text from anywhere: escaped, so a "[...]" in one is not read as markup
    failures = [escape(line) for line in failure_lines(rows)]
    if summary:
        footer = failures + selection_lines(summary)
    else:
        footer = failures + [f"no summary stored (sweep status: {sweep['status']}); rerun run_sweep.py --name "
                             f"{sweep['name']} to finish it"]
    print_listing(make_console(out), columns, rows, noun="runs",
                  title=f"Sweep {sweep['name']} · {sweep['strategy']} · sorted by {args.sort}", limit=args.limit,
                  footer=footer)


def write_sweep_report(reader: StoreReader, sweep: Row, output: str, max_points: int, out: TextIO) -> None:
    from inspect_tools.outfile import write_atomically
    from inspect_tools.sweep_report import load_sweep_report, render_sweep_html

    page = render_sweep_html(load_sweep_report(reader, sweep), max_points)
    size = write_atomically(output, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    out.write(f"wrote {output} ({size / 1e6:.1f} MB, self-contained HTML)\n")


def selection_lines(summary: dict[str, Any]) -> list[str]:
    """How much of the best result is luck: DSR and PBO, and the held-out check (shared with run_sweep.py)."""
    metric = summary.get("metric")
    best = summary.get("best") or {}
    if not best:
        return [f"no run completed with a {metric}: nothing to select"]
    n_trials = (summary.get("selection") or {}).get("n_trials", "?")
    lines = [f"best {metric}: run {(best.get('run_id') or '')[:8]} · Deflated Sharpe Ratio "
             f"{_fmt(summary.get('deflated_sharpe'))} (probability its true Sharpe beats the best of {n_trials} "
             f"skill-less trials) · PBO {_fmt(summary.get('pbo'))}"]
    oos = best.get("out_of_sample")
    if oos:
        held = oos.get("metrics") or {}
        lines.append(f"held out (after --select-until, never used for choosing): {metric} {_fmt(held.get(metric))}, "
                     f"total return {_fmt(held.get('total_return'))}")
    return lines


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "—"
