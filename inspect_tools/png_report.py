"""A static PNG of a run's equity and drawdown against buy-and-hold (matplotlib, Agg).

Uses the object-oriented API (``Figure`` + ``FigureCanvasAgg``): no pyplot
global state and no display needed. The image is exactly ``width × height`` px.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from inspect_tools.curves import thin_indices
from inspect_tools.formatting import run_label
from inspect_tools.report_data import ReportData

DPI = 100


def render_png(data: ReportData, path: str, width_px: int = 1200, height_px: int = 700,
               max_points: int = 4_000) -> None:
    """Write the PNG to ``path`` (the caller makes that atomic)."""
    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    ax_eq, ax_dd = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    ts = data.ts_ms
    if not data.has_equity:
        ax_eq.text(0.5, 0.5, "no equity rows stored", ha="center", va="center", transform=ax_eq.transAxes)
    else:
        _plot(ax_eq, ts, data.equity, max_points, label="strategy", color="#2166ac", lw=1.3)
        _plot(ax_dd, ts, 100.0 * data.drawdown, max_points, label="strategy", color="#d73027", lw=1.0, fill=True)
        if data.benchmark is not None:
            _plot(ax_eq, ts, data.benchmark.equity, max_points, label="buy-and-hold", color="#f28e2b", lw=1.0,
                  ls="--")
            _plot(ax_dd, ts, 100.0 * data.benchmark.drawdown, max_points, label="buy-and-hold", color="#f28e2b",
                  lw=0.9, ls="--")
        ax_eq.legend(loc="upper left", fontsize=9)
    run = data.run
    ax_eq.set_title(f"{run_label(run)} · {run['strategy']} · {run['symbol'] or ''} {run['timeframe'] or ''}",
                    fontsize=11, loc="left")
    ax_eq.set_ylabel("equity (quote)")
    ax_eq.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    ax_dd.set_ylabel("drawdown (%)")
    ax_dd.set_xlabel("time (UTC)")
    for ax in (ax_eq, ax_dd):
        ax.grid(True, alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=DPI)


def _plot(ax: Axes, ts: np.ndarray, values: np.ndarray, max_points: int, *, fill: bool = False,
          **style: Any) -> None:
    keep = thin_indices(values, max_points)
    x = ts[keep].astype("datetime64[ms]")
    ax.plot(x, values[keep], **style)
    if fill:
        ax.fill_between(x, values[keep], 0.0, color=style.get("color"), alpha=0.25, lw=0)
