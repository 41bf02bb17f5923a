"""A self-contained HTML report of one run: works offline, from a single file.

plotly.js is embedded inline once (``include_plotlyjs=True`` on the first chart),
the page loads nothing from the network, and every stored string is HTML-escaped.
"""
from __future__ import annotations

import html
from typing import Any, Iterable, Mapping, Sequence

from inspect_tools.charts import figure_html, losses_figure, main_figure
from inspect_tools.formatting import format_value, metric_kind, metric_specs, run_label
from inspect_tools.queries import TradeColumns
from inspect_tools.report_data import ReportData
from inspect_tools.summary import baselines, parameter_pairs, period_text, report_extras
from domain.times import ms_to_text
from inspect_tools.views import FOLD_COLUMNS, TRADE_COLUMNS, Column, metric_column

MAX_TABLE_TRADES = 5_000  # beyond this the page gets sluggish; the CSV export has them all

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1280px;
color:#222;padding:0 16px}
h1{font-size:1.5em;margin-bottom:4px}h3{font-size:1em;margin:14px 0 4px}h2{font-size:1.15em;margin-top:28px;border-bottom:1px solid #ddd}
.sub{color:#666;margin-top:0}.grid{display:flex;flex-wrap:wrap;gap:24px}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;border-bottom:1px solid #eee}
th{text-align:left;background:#f6f6f6;position:sticky;top:0}td.num,th.num{text-align:right;
font-variant-numeric:tabular-nums}.pos{color:#1a9850}.neg{color:#d73027}.kv td:first-child{font-weight:600}
.note{color:#666;font-size:12px}.scroll{max-height:560px;overflow:auto;border:1px solid #eee}
"""


def render_html(data: ReportData, max_points: int) -> str:
    run = data.run
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>{_e(run_label(run))} · run report</title><style>{_CSS}</style></head><body>",
             f"<h1>{_e(run_label(run))} <span class='sub'>· {_e(run['strategy'])} · {_e(run['mode'])}</span></h1>",
             f"<p class='sub'>run {_e(run['id'])} · {_e(run['symbol'] or '')} {_e(run['timeframe'] or '')} · "
             f"{_e(period_text(run['start_ts'], run['end_ts']))} (UTC) · status {_e(run['status'])}</p>"]
    if run["error"]:
        parts.append(f"<p class='neg'>error: {_e(run['error'])}</p>")
    parts.append("<div class='grid'>")
    parts.append(_kv_table("Run", _run_pairs(run, data.counts)))
    parts.append(_metrics_table(run))
    parts.append("</div>")
    parts.append("<h2>Charts</h2>")
    plotly_config = {"displaylogo": False, "responsive": True}
    if data.has_equity:
        fig = main_figure(data, max_points)
        parts.append(figure_html(fig, full_html=False, include_plotlyjs=True, div_id="chart-main",
                                 config=plotly_config))
        notes = [data.benchmark.note] if data.benchmark is not None else []
        if max_points > 0 and len(data.ts_ms) > max_points:
            notes.append(f"Lines thinned to about {max_points:,} points each (every bucket's first, min, max and last "
                         f"kept) from {len(data.ts_ms):,} bars; trade markers are all drawn.")
        parts.append("".join(f"<p class='note'>{_e(n)}</p>" for n in notes))
        plotly_js_included = True
    else:
        parts.append("<p>No equity rows stored for this run yet.</p>")
        plotly_js_included = False
    losses = losses_figure(data.folds)
    if losses is not None:
        parts.append("<h2>Model versions (walk-forward folds)</h2>")
        parts.append(figure_html(losses, full_html=False, include_plotlyjs=not plotly_js_included,
                                 div_id="chart-losses", config=plotly_config))
        parts.append(_rows_table(FOLD_COLUMNS, data.folds))
    extras = report_extras(run)
    if extras:
        parts.append("<h2>Report extras</h2>")
        parts.extend(_extra(key, value) for key, value in extras.items())
    parts.append(_trades_section(data.trades))
    params = parameter_pairs(run["params"])  # long and rarely read: last, after what a person looks for first
    if params:
        parts.append(_kv_table("Parameters", [(k, format_value("raw", v)) for k, v in params]))
    parts.append("</body></html>")
    return "\n".join(parts)


def _extra(key: str, value: Any) -> str:
    """A free-form report entry: a list of flat dicts as a table, a dict as fields, else JSON."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        keys = list(dict.fromkeys(k for v in value for k in v))
        return f"<h3>{_e(key)}</h3>" + _rows_table([Column(k, k, metric_kind(k)) for k in keys], value)
    if isinstance(value, dict) and value:
        return _kv_table("", [(k, format_value(metric_kind(k), v)) for k, v in value.items()], heading=key)
    return _kv_table("", [(key, format_value("auto", value))])


def _trades_section(trades: TradeColumns) -> str:
    head = f"<h2>Trades ({len(trades):,})</h2>"
    if not len(trades):
        return head + "<p>No closed trades.</p>"
    note = ""
    if len(trades) > MAX_TABLE_TRADES:
        note = (f"<p class='note'>First {MAX_TABLE_TRADES:,} of {len(trades):,} trades; "
                f"all of them: <code>inspect_trades.py trades RUN --format csv</code>.</p>")
    shown = {key: column[:MAX_TABLE_TRADES] for key, column in trades.columns.items()}
    return head + note + "<div class='scroll'>" + _columns_table(TRADE_COLUMNS, shown) + "</div>"


def _rows_table(columns: Sequence[Column], rows: Iterable[dict[str, Any]]) -> str:
    rows = list(rows)
    return _columns_table(columns, {c.key: [row.get(c.key) for row in rows] for c in columns})


def _columns_table(columns: Sequence[Column], values: Mapping[str, Sequence[Any]]) -> str:
    """A table from one sequence of values per column key, built a column at a time."""
    head = "".join(f"<th class='{_align(c)}'>{_e(c.header)}</th>" for c in columns)
    cells = [_cells(c, values[c.key]) for c in columns]
    body = "".join(f"<tr>{''.join(row)}</tr>" for row in zip(*cells))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cells(col: Column, values: Sequence[Any]) -> list[str]:
    """One column's ``<td>`` cells (signed ones coloured). The table of 5,000 trades has 60,000 of them:
    plain numbers format to digits, separators, signs and letters, so only other values need escaping."""
    align = _align(col)
    plain, pos, neg = f"<td class='{align}'>", f"<td class='{align} pos'>", f"<td class='{align} neg'>"
    out = []
    for value in values:
        text = format_value(col.kind, value)
        if type(value) not in _PLAIN_NUMBERS:
            text = _e(text)
        opener = plain
        if col.signed and isinstance(value, (int, float)) and value:
            opener = pos if value > 0 else neg
        out.append(f"{opener}{text}</td>")
    return out


_PLAIN_NUMBERS = {int, float, bool}


def _metrics_table(run: dict[str, Any]) -> str:
    columns = [("strategy", run["metrics"] or {}), *baselines(run).items()]
    specs = metric_specs({k for _, m in columns for k in m})
    if not specs:
        return "<div><h2>Metrics</h2><p>None stored yet (a paper run gets them when it stops).</p></div>"
    head = "<th>metric</th>" + "".join(f"<th class='num'>{_e(label)}</th>" for label, _ in columns)
    rows = []
    for spec in specs:
        col = metric_column(spec)
        cells = [f"<td>{_e(spec.label)}</td>"]
        for _, metrics in columns:
            value = metrics.get(spec.key)
            cls = "num"
            if col.signed and isinstance(value, (int, float)) and value:
                cls += " pos" if value > 0 else " neg"
            cells.append(f"<td class='{cls}'>{_e(format_value(spec.kind, value))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<div><h2>Metrics</h2><table id='metrics'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _kv_table(title: str, pairs: Iterable[tuple[str, str]], heading: str = "") -> str:
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in pairs)
    heading = f"<h2>{_e(title)}</h2>" if title else (f"<h3>{_e(heading)}</h3>" if heading else "")
    return f"<div>{heading}<table class='kv'>{rows}</table></div>"


def _run_pairs(run: dict[str, Any], counts: dict[str, int]) -> list[tuple[str, str]]:
    return [("id", run["id"]), ("name", run["name"] or ""), ("strategy", run["strategy"]),
            ("engine", run["engine"]), ("mode", run["mode"]), ("status", run["status"]),
            ("symbol", run["symbol"] or ""), ("exchange", run["exchange"] or ""),
            ("timeframe", run["timeframe"] or ""), ("first bar (UTC)", ms_to_text(run["start_ts"])),
            ("last bar (UTC)", ms_to_text(run["last_bar_ts"] or run["end_ts"])),
            ("initial cash", format_value("money", run["initial_cash"])),
            ("data source", run["data_source"] or ""), ("data hash", run["data_hash"] or ""),
            ("code version", run["code_version"] or ""), ("created", run["created_at"]),
            ("stored rows", ", ".join(f"{n:,} {name}" for name, n in counts.items()))]


def _align(col: Column) -> str:
    return "" if col.kind in ("text", "time") else "num"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)
