"""Readable metric tables for the terminal (rich)."""
from __future__ import annotations

from typing import Any, Mapping

from rich.table import Table

from inspect_tools.formatting import format_value
from inspect_tools.tables import metrics_table

__all__ = ["metrics_table", "rows_table"]  # metrics_table: the one shared with inspect_trades.py


def rows_table(rows: list[Mapping[str, Any]], title: str | None = None, formats: Mapping[str, str] | None = None) -> Table:
    """A plain table of dict rows (keys of the first row are the columns)."""
    table = Table(title=title, title_justify="left")
    if not rows:
        return table
    formats = formats or {}
    for key in rows[0]:
        table.add_column(key, justify="right" if isinstance(rows[0][key], (int, float)) else "left")
    for row in rows:
        table.add_row(*(format_value(formats[k], row[k]) if k in formats else _cell(row[k]) for k in rows[0]))
    return table


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)

