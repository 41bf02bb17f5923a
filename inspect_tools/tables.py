"""Rich tables for the terminal, truncated to ``limit`` rows with a '… N more' line."""
from __future__ import annotations

import os
import sys
from typing import Any, Iterable, Mapping, Sequence, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from inspect_tools.formatting import MISSING, format_value, metric_specs
from inspect_tools.views import DEFAULT_LIMIT, Column, metric_column

_PIPE_WIDTH = 160  # when stdout is not a terminal and COLUMNS is unset (rich would use 80)


def make_console(stream: TextIO | None = None) -> Console:
    stream = stream if stream is not None else sys.stdout
    width = None
    if not (hasattr(stream, "isatty") and stream.isatty()) and "COLUMNS" not in os.environ:
        width = _PIPE_WIDTH
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def listing(columns: Sequence[Column], rows: Sequence[dict[str, Any]], *, title: str | None = None,
            limit: int = DEFAULT_LIMIT, tail: bool = False) -> tuple[Table, int]:
    """The table of the first (or, with ``tail``, last) ``limit`` rows; returns it and the hidden count."""
    shown = list(rows)
    hidden = 0
    if limit > 0 and len(shown) > limit:
        hidden = len(shown) - limit
        shown = shown[-limit:] if tail else shown[:limit]
    table = Table(title=_plain(title), title_justify="left", header_style="bold")
    for col in columns:
        numeric = col.kind not in ("text", "time")
        table.add_column(Text(col.header), justify="right" if numeric else "left", no_wrap=col.kind != "text",
                         overflow="fold" if col.kind == "text" else "ellipsis")
    for row in shown:
        table.add_row(*[cell(col, row.get(col.key)) for col in columns])
    return table, hidden


def print_listing(console: Console, columns: Sequence[Column], rows: Sequence[dict[str, Any]], *, noun: str,
                  title: str | None = None, limit: int = DEFAULT_LIMIT, tail: bool = False,
                  footer: Iterable[str] = ()) -> None:
    """Print a listing, the '… N more' line when truncated, and footer lines."""
    if not rows:
        console.print(Text(f"no {noun} match" if title is None else f"{title}: no {noun} match"))
        return
    table, hidden = listing(columns, rows, title=title, limit=limit, tail=tail)
    if hidden and tail:
        console.print(Text(f"… {hidden:,} earlier {noun} (use --limit 0 for all, or --format csv)", style="dim"))
    console.print(table)
    if hidden and not tail:
        console.print(Text(f"… {hidden:,} more {noun} (use --limit 0 for all, or --format csv)", style="dim"))
    for line in footer:
        console.print(line)


def cell(col: Column, value: Any) -> Text:
    text = format_value(col.kind, value)
    style = ""
    if text == MISSING:
        style = "dim"
    elif col.signed and isinstance(value, (int, float)) and value:
        style = "green" if value > 0 else "red"
    return Text(text, style=style)


def key_values(title: str, pairs: Iterable[tuple[str, str]]) -> Table:
    """A two-column 'field: value' table."""
    table = Table(title=_plain(title), title_justify="left", show_header=False, box=None)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in pairs:
        table.add_row(Text(key), Text(value) if value else Text(MISSING, style="dim"))
    return table


MetricColumns = Mapping[str, Mapping[str, Any]] | Sequence[tuple[str, Mapping[str, Any]]]


def metrics_table(columns: MetricColumns, title: str | None = None,
                  header_rows: Sequence[tuple[str, Sequence[str]]] = ()) -> Table | None:
    """THE metrics table of every terminal view (run_backtest.py, inspect_trades.py, bench scripts):
    one row per metric (labels and units from ``engine.metrics.METRIC_SPECS``), one column per
    run or baseline. Columns are {label: metrics} or (label, metrics) pairs, where metrics is a
    stored dict or an ``engine.metrics.Metrics``. None when no column has any metric.

    ``header_rows`` are (field, one text per column) lines above the metrics, e.g. period.
    """
    pairs = list(columns.items()) if isinstance(columns, Mapping) else list(columns)
    specs = metric_specs({k for _, metrics in pairs for k in metrics})
    if not specs:
        return None
    table = Table(title=_plain(title), title_justify="left", header_style="bold")
    table.add_column("metric")
    for label, _ in pairs:
        table.add_column(Text(label), justify="right", overflow="fold")
    for field, values in header_rows:
        table.add_row(Text(field, style="dim"), *[Text(v, style="dim") for v in values])
    if header_rows:
        table.add_section()
    for spec in specs:
        col = metric_column(spec)
        table.add_row(spec.label, *[cell(col, metrics.get(spec.key)) for _, metrics in pairs])
    return table


def _plain(title: str | None) -> Text | None:
    """Titles carry run names: never let rich read them as markup ('[/x]' would raise)."""
    return None if title is None else Text(title)
