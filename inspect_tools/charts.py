"""Plotly figures of a run: price with trades, equity and drawdown against buy-and-hold,
the signal against its threshold, and per-fold model losses.

Long series are thinned (``curves.thin_indices``) to ``max_points`` per line so the
page stays quick to open; trade markers are never thinned.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from inspect_tools.curves import thin_indices
from store.series import SeriesFrame
from inspect_tools.queries import TradeColumns
from inspect_tools.report_data import ReportData

GREEN, RED, BLUE, GREY, ORANGE = "#1a9850", "#d73027", "#2166ac", "#7f7f7f", "#f28e2b"


def _dates(ts_ms: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.asarray(ts_ms, dtype="int64").astype("datetime64[ms]")


def _line(ts_ms: np.ndarray, values: np.ndarray, max_points: int, **kwargs: Any) -> go.Scatter:
    keep = thin_indices(values, max_points)
    return go.Scatter(x=_dates(ts_ms[keep]), y=values[keep], mode="lines", **kwargs)


def main_figure(data: ReportData, max_points: int) -> go.Figure:
    """Price + trades, equity vs buy-and-hold, drawdowns, and the signal (when stored), on one time axis."""
    has_signal = len(data.signals) > 0
    titles = ["Price (close) with entries and exits", "Equity (quote) vs buy-and-hold", "Drawdown"]
    heights = [0.36, 0.26, 0.16]
    if has_signal:
        titles.append("Signal (score) and threshold ±τ")
        heights.append(0.22)
    fig = make_subplots(rows=len(titles), cols=1, shared_xaxes=True, vertical_spacing=0.05,
                        subplot_titles=titles, row_heights=heights)
    ts = data.ts_ms
    fig.add_trace(_line(ts, data.close, max_points, name="close", line=dict(color=GREY, width=1)), row=1, col=1)
    for trace in trade_markers(data.trades):
        fig.add_trace(trace, row=1, col=1)
    fig.add_trace(_line(ts, data.equity, max_points, name="strategy equity", line=dict(color=BLUE, width=1.5)),
                  row=2, col=1)
    if data.benchmark is not None:
        fig.add_trace(_line(ts, data.benchmark.equity, max_points, name="buy-and-hold equity",
                            line=dict(color=ORANGE, width=1.2, dash="dash")), row=2, col=1)
    fig.add_trace(_line(ts, 100.0 * data.drawdown, max_points, name="strategy drawdown %", fill="tozeroy",
                        line=dict(color=RED, width=1)), row=3, col=1)
    if data.benchmark is not None:
        fig.add_trace(_line(ts, 100.0 * data.benchmark.drawdown, max_points, name="buy-and-hold drawdown %",
                            line=dict(color=ORANGE, width=1, dash="dash")), row=3, col=1)
    if has_signal:
        for trace in signal_traces(data.signals, max_points):
            fig.add_trace(trace, row=4, col=1)
    fig.update_yaxes(title_text="price", row=1, col=1)
    fig.update_yaxes(title_text="equity", row=2, col=1)
    fig.update_yaxes(title_text="%", row=3, col=1)
    fig.update_layout(template="plotly_white", height=300 * len(titles), hovermode="x unified",
                      margin=dict(l=60, r=20, t=40, b=40), legend=dict(orientation="h", y=-0.04))
    return fig


def trade_markers(trades: TradeColumns) -> list[go.Scatter]:
    """Entries (▲ long, ▼ short) at the fill open and price; exits (✕) coloured by net P&L.

    Built from numpy arrays (plotly validates those in C, not element by element): one pass of
    f-strings per kind of marker over all trades, then a mask per trace. Hover texts are
    fixed-width unicode arrays, not object arrays, so plotly copies them with memcpy rather
    than per element (a run with 50k trades has 100k of them).
    """
    if not len(trades):
        return []
    c = trades.columns
    entry_ts = np.array(c["entry_ts"], dtype=np.int64)
    exit_ts = np.array(c["exit_ts"], dtype=np.int64)
    entry_text = np.array([f"#{seq} {side} entry {when} @ {price:,.2f}"
                           for seq, side, when, price in zip(c["seq"], c["side"], _texts(entry_ts), c["entry_price"])])
    exit_text = np.array([f"#{seq} exit ({reason}) {when} @ {price:,.2f}, P&L {pnl:,.2f}"
                          for seq, reason, when, price, pnl in zip(c["seq"], c["exit_reason"], _texts(exit_ts),
                                                                   c["exit_price"], c["pnl"])])
    entry_price, exit_price = np.array(c["entry_price"], dtype=float), np.array(c["exit_price"], dtype=float)
    sides = np.array(c["side"], dtype=object)
    traces = []
    for side, symbol, color in (("long", "triangle-up", GREEN), ("short", "triangle-down", RED)):
        keep = sides == side
        if keep.any():
            traces.append(go.Scatter(
                x=_dates(entry_ts[keep]), y=entry_price[keep], mode="markers",
                name=f"{side} entry", marker=dict(symbol=symbol, size=9, color=color, line=dict(width=0.5)),
                text=entry_text[keep], hoverinfo="text"))
    won = np.array(c["pnl"], dtype=float) > 0
    for keep, name, color in ((won, "exit (profit)", GREEN), (~won, "exit (loss)", RED)):  # one colour per trace
        if keep.any():
            traces.append(go.Scatter(
                x=_dates(exit_ts[keep]), y=exit_price[keep], mode="markers", name=name,
                marker=dict(symbol="x", size=8, color=color), text=exit_text[keep], hoverinfo="text"))
    return traces


def figure_html(fig: go.Figure, **kwargs: Any) -> str:
    """``fig.to_html(**kwargs)``, byte for byte, without plotly's element-by-element JSON fallback.

    plotly serialises with orjson (always installed: ccxt needs it) in one C call only when every
    value is JSON-native. Hover texts and dates are numpy arrays, so it otherwise falls back to a
    recursive Python walk over every element (~0.2 s for a 1M-bar run's 100k trade markers).
    Converting those arrays to lists first, exactly as that walk would, keeps the one C call.
    """
    return pio.to_html(_json_native(fig.to_dict()), validate=False, **kwargs)


def _json_native(obj: Any) -> Any:
    """Text, object and datetime64 arrays as lists (dates as ``np.datetime_as_string``, like plotly's
    ``clean_to_json_compatible``); numeric arrays stay arrays (orjson writes them natively)."""
    if isinstance(obj, dict):
        return {k: _json_native(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_native(v) for v in obj]
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "OU":
            items = obj.tolist()
            return items if set(map(type, items)) <= _JSON_SCALARS else [_json_native(v) for v in items]
        if obj.dtype.kind == "M":
            return np.datetime_as_string(obj).tolist()
    return obj


_JSON_SCALARS = {str, int, float, bool, type(None)}


def _texts(ts_ms: np.ndarray) -> list[str]:
    """``ms_to_text`` for many times at once ('2024-01-02 03:04' UTC)."""
    iso = np.datetime_as_string(ts_ms.astype("datetime64[ms]"), unit="m")
    codes = iso.view(np.uint32)  # UTF-32 code points: every "T" → " " in one step, not one str.replace each
    codes[codes == ord("T")] = ord(" ")
    return iso.tolist()


def signal_traces(signals: SeriesFrame, max_points: int) -> list[go.Scatter]:
    """Signal, ±threshold and (hidden) unusualness lines from the stored signal series."""
    ts, sig = signals.values["ts"], signals.values["signal"]
    traces = [_line(ts, sig, max_points, name="signal", line=dict(color=BLUE, width=1))]
    thr = np.abs(signals.values["threshold"]).astype(float)
    if signals.missing.get("threshold") is not None:
        thr[signals.missing["threshold"]] = np.nan
    if np.isfinite(thr).any():
        keep = thin_indices(np.nan_to_num(thr), max_points)
        for sign, name in ((1.0, "+τ threshold"), (-1.0, "−τ threshold")):
            traces.append(go.Scatter(x=_dates(ts[keep]), y=sign * thr[keep], mode="lines", name=name,
                                     line=dict(color=RED, width=1, dash="dot", shape="hv")))
    u_missing = signals.missing.get("unusualness")
    if u_missing is None or not u_missing.all():
        u = signals.values["unusualness"].astype(float)
        if u_missing is not None:
            u[u_missing] = np.nan
        traces.append(_line(ts, np.nan_to_num(u), max_points, name="unusualness", visible="legendonly",
                            line=dict(color=GREY, width=1)))
    return traces


def loss_histories(losses: Any) -> dict[str, tuple[list[float], list[float]]]:
    """{'train': ([step...], [loss...]), ...} from a stored losses JSON, whatever its list shape.

    Accepted per key: [loss, ...], [[step, loss], ...] or [{'step': s, 'loss': l}, ...].
    Anything else is skipped (the scalar train/val losses are drawn separately).
    """
    out: dict[str, tuple[list[float], list[float]]] = {}
    if not isinstance(losses, dict):
        return out
    for key, series in losses.items():
        if not isinstance(series, list) or not series:
            continue
        xs: list[float] = []
        ys: list[float] = []
        for i, item in enumerate(series):
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                xs.append(i)
                ys.append(float(item))
            elif isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(v, (int, float)) for v in item):
                xs.append(float(item[0]))
                ys.append(float(item[1]))
            elif isinstance(item, dict) and isinstance(item.get("loss"), (int, float)):
                xs.append(float(item.get("step", i)))
                ys.append(float(item["loss"]))
        if ys:
            out[str(key)] = (xs, ys)
    return out


def losses_figure(folds: Sequence[dict[str, Any]]) -> go.Figure | None:
    """Final train/val loss per fold, and each fold's loss history when stored."""
    if not folds:
        return None
    histories = [(f["fold_index"], loss_histories(f["losses"])) for f in folds]
    has_history = any(h for _, h in histories)
    fig = make_subplots(rows=1, cols=2 if has_history else 1, horizontal_spacing=0.08,
                        subplot_titles=["Final losses per fold"] + (["Loss history per fold"] if has_history else []))
    index = [f["fold_index"] for f in folds]
    for key, name, color in (("train_loss", "train loss", BLUE), ("val_loss", "validation loss", ORANGE)):
        values = [f[key] for f in folds]
        if any(v is not None for v in values):
            fig.add_trace(go.Scatter(x=index, y=values, mode="lines+markers", name=name, line=dict(color=color)),
                          row=1, col=1)
    fig.update_xaxes(title_text="fold", row=1, col=1, dtick=1)
    if has_history:
        for fold, series in histories:
            for key, (xs, ys) in series.items():
                fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"fold {fold} {key}",
                                         line=dict(width=1, dash="dot" if "val" in key else "solid")), row=1, col=2)
        fig.update_xaxes(title_text="step", row=1, col=2)
        if all(y > 0 for _, series in histories for _, ys in series.values() for y in ys):
            fig.update_yaxes(type="log", row=1, col=2)  # SSM losses can be negative: linear then
    fig.update_layout(template="plotly_white", height=380, margin=dict(l=60, r=20, t=40, b=40))
    return fig
