"""A self-contained HTML report of a sweep: how good is the best configuration, and how much is luck?

Sections: the selection statistics (Deflated Sharpe Ratio, PBO, and the held-out
result after ``--select-until`` when there is one), a heatmap of the metric over
two swept parameters (the mean over anything else swept), the distribution of
the runs' Sharpe ratios with the best and the luck-only expectation marked, the
best run's equity beside buy-and-hold, and the table of runs. plotly.js is
inlined once; every stored string is HTML-escaped.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go

from engine.metrics import bars_per_year
from domain.times import timeframe_ms
from inspect_tools.charts import BLUE, GREY, ORANGE, RED, _line, figure_html
from inspect_tools.formatting import format_value
from inspect_tools.html_report import _CSS
from inspect_tools.queries import StoreReader
from inspect_tools.report_data import ReportData, load_report_data

Row = dict[str, Any]


@dataclass(frozen=True)
class SweepReport:
    sweep: Row
    runs: list[Row]  # trial runs with params and metrics
    best: ReportData | None  # the best run's equity and benchmark
    held_out: ReportData | None  # the best configuration after --select-until


def load_sweep_report(reader: StoreReader, sweep: Row) -> SweepReport:
    runs = reader.sweep_runs(sweep["id"])
    summary = sweep.get("summary") or {}
    best_ref = summary.get("best") or {}
    best = load_report_data(reader, reader.run(best_ref["run_id"])) if best_ref.get("run_id") else None
    oos_ref = best_ref.get("out_of_sample") or {}
    held = load_report_data(reader, reader.run(oos_ref["run_id"])) if oos_ref.get("run_id") else None
    return SweepReport(sweep, runs, best, held)


def swept_axes(runs: list[Row]) -> list[str]:
    """Swept parameters with more than one numeric value, in the order the sweep gave them."""
    names = list(dict.fromkeys(k for r in runs for k in (r["params"] or {})))
    out = []
    for n in names:
        values = {(r["params"] or {}).get(n) for r in runs}
        if len(values) > 1 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out.append(n)
    return out


def heatmap_figure(runs: list[Row], metric: str) -> go.Figure | None:
    """Mean ``metric`` over the first two swept parameters (or a line over one)."""
    axes = swept_axes(runs)
    done = [r for r in runs if r["status"] == "completed" and isinstance((r["metrics"] or {}).get(metric), (int, float))]
    if not axes or not done:
        return None
    if len(axes) == 1:
        xs = sorted({r["params"][axes[0]] for r in done})
        ys = [float(np.mean([r["metrics"][metric] for r in done if r["params"][axes[0]] == x])) for x in xs]
        fig = go.Figure(go.Scatter(x=xs, y=ys, mode="lines+markers", line=dict(color=BLUE), name=metric))
        fig.update_layout(xaxis_title=axes[0], yaxis_title=f"mean {metric}")
    else:
        xname, yname = axes[0], axes[1]
        xs = sorted({r["params"][xname] for r in done})
        ys = sorted({r["params"][yname] for r in done})
        z = np.full((len(ys), len(xs)), np.nan)
        for i, y in enumerate(ys):
            for j, x in enumerate(xs):
                cell = [r["metrics"][metric] for r in done if r["params"][xname] == x and r["params"][yname] == y]
                if cell:
                    z[i, j] = float(np.mean(cell))
        fig = go.Figure(go.Heatmap(x=[str(x) for x in xs], y=[str(y) for y in ys], z=z, colorscale="RdYlGn",
                                   colorbar=dict(title=metric), hovertemplate=f"{xname}=%{{x}}<br>{yname}=%{{y}}<br>"
                                                                              f"{metric}=%{{z:.3f}}<extra></extra>"))
        fig.update_layout(xaxis_title=xname, yaxis_title=yname, xaxis_type="category", yaxis_type="category")
    fig.update_layout(template="plotly_white", height=420, margin=dict(l=60, r=20, t=40, b=50),
                      title=f"{metric} over the swept parameters" + (" (mean over the rest)" if len(axes) > 2 else ""))
    return fig


def sharpe_figure(runs: list[Row], summary: Row) -> go.Figure | None:
    values = [r["metrics"]["sharpe"] for r in runs if r["status"] == "completed"
              and isinstance((r["metrics"] or {}).get("sharpe"), (int, float))]
    if not values:
        return None
    fig = go.Figure(go.Histogram(x=values, nbinsx=min(50, max(5, len(values) // 2)), marker_color=BLUE,
                                 name="runs"))
    best = ((summary.get("best") or {}).get("metrics") or {}).get("sharpe")
    if isinstance(best, (int, float)):
        fig.add_vline(x=best, line=dict(color=RED, dash="dash"), annotation_text="best")
    sr0 = _annualised_sr0(runs, summary)
    if sr0 is not None:
        fig.add_vline(x=sr0, line=dict(color=GREY, dash="dot"), annotation_text="expected best by luck",
                      annotation_position="bottom right")
    fig.update_layout(template="plotly_white", height=380, margin=dict(l=60, r=20, t=40, b=50),
                      title="Distribution of the runs' Sharpe ratios (annualised)", xaxis_title="Sharpe",
                      yaxis_title="runs", showlegend=False)
    return fig


def equity_figure(best: ReportData, held: ReportData | None, max_points: int) -> go.Figure:
    fig = go.Figure()
    fig.add_trace(_line(best.ts_ms, best.equity, max_points, name="best run", line=dict(color=BLUE, width=1.5)))
    if best.benchmark is not None:
        fig.add_trace(_line(best.ts_ms, best.benchmark.equity, max_points, name="buy-and-hold",
                            line=dict(color=ORANGE, width=1.2, dash="dash")))
    if held is not None and held.has_equity:
        fig.add_trace(_line(held.ts_ms, held.equity, max_points, name="best configuration, held out",
                            line=dict(color=RED, width=1.5)))
        if held.benchmark is not None:
            fig.add_trace(_line(held.ts_ms, held.benchmark.equity, max_points, name="buy-and-hold, held out",
                                line=dict(color=GREY, width=1.2, dash="dash")))
    fig.update_layout(template="plotly_white", height=420, margin=dict(l=60, r=20, t=40, b=50),
                      title="Best run's equity beside buy-and-hold", yaxis_title="equity (quote)",
                      legend=dict(orientation="h", y=-0.15))
    return fig


def render_sweep_html(data: SweepReport, max_points: int) -> str:
    sweep, summary = data.sweep, data.sweep.get("summary") or {}
    metric = summary.get("metric") or (sweep.get("spec") or {}).get("metric") or "sharpe"
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(sweep['name'])} · sweep "
             f"report</title><style>{_CSS}</style></head><body>",
             f"<h1>Sweep {_e(sweep['name'])} <span class='sub'>· {_e(sweep['strategy'])} · {len(data.runs)} runs · "
             f"status {_e(sweep['status'])}</span></h1>", _statistics(summary, metric)]
    figures = [("chart-heatmap", heatmap_figure(data.runs, metric)), ("chart-sharpe", sharpe_figure(data.runs, summary))]
    if data.best is not None and data.best.has_equity:
        figures.append(("chart-equity", equity_figure(data.best, data.held_out, max_points)))
    included = False
    parts.append("<h2>Charts</h2>")
    for div_id, fig in figures:
        if fig is None:
            continue
        parts.append(figure_html(fig, full_html=False, include_plotlyjs=not included, div_id=div_id,
                                 config={"displaylogo": False, "responsive": True}))
        included = True
    if not included:
        parts.append("<p class='note'>No completed run to chart.</p>")
    if data.best is not None and data.best.benchmark is not None:
        parts.append(f"<p class='note'>{_e(data.best.benchmark.note)}</p>")
    parts.append(_runs_table(data.runs, metric))
    parts.append("</body></html>")
    return "\n".join(parts)


def _statistics(summary: Row, metric: str) -> str:
    if not summary:
        return "<p class='neg'>No summary stored: the sweep did not finish. Rerun run_sweep.py with its name.</p>"
    sel = summary.get("selection") or {}
    best = summary.get("best") or {}
    if not best:
        return ("<h2>Is the best result luck?</h2><p class='neg' id='selection'>No run completed with a "
                f"{_e(metric)}: nothing to select. Each run's error is in the table below.</p>")
    pairs = [("best by", metric), ("best run", best.get("run_id", "")),
             ("best parameters", ", ".join(f"{k}={v}" for k, v in (best.get("params") or {}).items())),
             ("best Sharpe (annualised)", format_value("ratio", (best.get("metrics") or {}).get("sharpe"))),
             ("Deflated Sharpe Ratio", format_value("ratio", summary.get("deflated_sharpe"))),
             ("trials counted", str(sel.get("n_trials", ""))),
             ("expected best Sharpe by luck (per bar)", format_value("ratio", sel.get("expected_max_sharpe_per_bar"))),
             ("best Sharpe (per bar)", format_value("ratio", sel.get("best_sharpe_per_bar"))),
             ("track length (bars)", str(sel.get("track_length", ""))),
             ("skewness / kurtosis of the best's returns",
              f"{format_value('ratio', sel.get('skewness'))} / {format_value('ratio', sel.get('kurtosis'))}"),
             ("Probability of Backtest Overfitting", format_value("ratio", summary.get("pbo"))),
             ("PBO over", f"{sel.get('pbo_configs', '')} configurations on the best run's data and seed, "
                          f"{sel.get('pbo_splits', '')} blocks, {sel.get('pbo_combinations', '')} combinations")]
    oos = best.get("out_of_sample")
    if oos:
        m = oos.get("metrics") or {}
        pairs += [("held out (after --select-until, never used for choosing)",
                   f"Sharpe {format_value('ratio', m.get('sharpe'))}, total return "
                   f"{format_value('pct', m.get('total_return'))}, trades {m.get('trades', '')}")]
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in pairs)
    return (f"<h2>Is the best result luck?</h2><table class='kv' id='selection'>{rows}</table>"
            "<p class='note'>DSR: probability that the best configuration's true Sharpe beats the best of that many "
            "skill-less trials (Bailey &amp; López de Prado 2014). PBO: share of in-sample/out-of-sample splits "
            "where the in-sample winner ranks at or below the median out of sample (CSCV, Bailey et al. 2015); "
            "near 0.5 means the choice is noise.</p>")


def _runs_table(runs: list[Row], metric: str) -> str:
    names = list(dict.fromkeys(k for r in runs for k in (r["params"] or {})))
    keys = list(dict.fromkeys([metric, "sharpe", "total_return", "max_drawdown", "trades"]))
    ordered = sorted(runs, key=lambda r: -((r["metrics"] or {}).get(metric) or -math.inf))
    head = "".join(f"<th>{_e(h)}</th>" for h in ["run", *names, "data", "seed", *keys, "status"])
    body = []
    for r in ordered:
        m = r["metrics"] or {}
        cells = [r["id"][:8], *[(r["params"] or {}).get(n, "") for n in names], r["data_path"].rsplit("/", 1)[-1],
                 "" if r["seed"] is None else r["seed"],
                 *[format_value("pct" if k in ("total_return", "max_drawdown") else "auto", m.get(k)) for k in keys],
                 r["status"] + (f": {r['error']}" if r["error"] else "")]
        body.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    return (f"<h2>Runs ({len(runs)}, best {_e(metric)} first)</h2><div class='scroll'><table id='runs'><thead><tr>"
            f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def _annualised_sr0(runs: list[Row], summary: Row) -> float | None:
    sr0 = (summary.get("selection") or {}).get("expected_max_sharpe_per_bar")
    tf = next((r["timeframe"] for r in runs if r.get("timeframe")), None)
    if not isinstance(sr0, (int, float)) or tf is None:
        return None
    return sr0 * math.sqrt(bars_per_year(timeframe_ms(tf)))


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)
