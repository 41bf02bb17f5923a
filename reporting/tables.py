"""Readable metric tables for the terminal (rich)."""
from __future__ import annotations

from typing import Any, Mapping

from rich.console import Console
from rich.table import Table

METRIC_ROWS: list[tuple[str, str, str]] = [
    ("total_return", "Total return", "pct"),
    ("cagr", "CAGR", "pct"),
    ("volatility", "Volatility (ann.)", "pct"),
    ("sharpe", "Sharpe", "num"),
    ("sortino", "Sortino", "num"),
    ("max_drawdown", "Max drawdown", "pct"),
    ("max_drawdown_days", "Max DD duration (days)", "num1"),
    ("calmar", "Calmar", "num"),
    ("trades", "Trades", "int"),
    ("win_rate", "Win rate", "pct"),
    ("profit_factor", "Profit factor", "num"),
    ("avg_trade_pct", "Avg trade (%)", "num"),
    ("exposure", "Exposure", "pct"),
    ("turnover", "Turnover (× cash)", "num1"),
    ("fees_paid", "Fees paid", "money"),
    ("final_equity", "Final equity", "money"),
]


def fmt_value(value: Any, kind: str) -> str:
    if value is None:
        return "–"
    if kind == "pct":
        return f"{100 * value:,.2f} %"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "num1":
        return f"{value:,.1f}"
    return f"{value:,.3f}"


def metrics_table(columns: Mapping[str, Mapping[str, Any]], title: str | None = None) -> Table:
    """One row per metric, one column per strategy/baseline."""
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    for name in columns:
        table.add_column(name, justify="right")
    for key, label, kind in METRIC_ROWS:
        if not any(key in m for m in columns.values()):
            continue
        table.add_row(label, *(fmt_value(m.get(key), kind) for m in columns.values()))
    return table


def rows_table(rows: list[Mapping[str, Any]], title: str | None = None, formats: Mapping[str, str] | None = None) -> Table:
    """A plain table of dict rows (keys of the first row are the columns)."""
    table = Table(title=title, title_justify="left")
    if not rows:
        return table
    formats = formats or {}
    for key in rows[0]:
        table.add_column(key, justify="right" if isinstance(rows[0][key], (int, float)) else "left")
    for row in rows:
        table.add_row(*(fmt_value(row[k], formats[k]) if k in formats else _cell(row[k]) for k in rows[0]))
    return table


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def print_table(table: Table, console: Console | None = None) -> None:
    (console or Console()).print(table)
