"""What each listing shows: terminal columns (with format kinds) and export fields.

Exports carry every stored value at full precision plus ISO-8601 UTC copies of
the ms time stamps; terminal tables show the subset a person reads.
"""
from __future__ import annotations

from dataclasses import dataclass

from inspect_tools.formatting import MetricSpec

DEFAULT_LIMIT = 50  # table rows shown unless --limit says otherwise

@dataclass(frozen=True)
class Column:
    key: str
    header: str
    kind: str = "text"  # see formatting.format_value
    signed: bool = False  # colour positive green, negative red


RUN_COLUMNS = (
    Column("short_id", "id"), Column("name", "name"), Column("mode", "mode"), Column("strategy", "strategy"),
    Column("symbol", "symbol"), Column("timeframe", "tf"), Column("period", "period"), Column("state", "status"),
    Column("trades", "trades", "int"), Column("total_return", "return", "pct", signed=True),
    Column("sharpe", "Sharpe", "ratio"), Column("max_drawdown", "max DD", "pct"),
)
RUN_FIELDS = ("id", "name", "mode", "strategy", "engine", "symbol", "exchange", "timeframe", "status",
              "start_ts", "start_time", "end_ts", "end_time", "last_bar_ts", "created_at", "initial_cash",
              "trades", "total_return", "return_source", "sharpe", "max_drawdown", "error", "interrupted")

TRADE_COLUMNS = (
    Column("seq", "#", "int"), Column("side", "side"), Column("qty", "qty", "qty"),
    Column("entry_ts", "entry (UTC)", "time"), Column("exit_ts", "exit (UTC)", "time"),
    Column("entry_price", "entry px", "price"), Column("exit_price", "exit px", "price"),
    Column("fees", "fees", "money"), Column("pnl", "P&L", "money", signed=True),
    Column("return_pct", "return", "pct100", signed=True), Column("exit_reason", "exit reason"),
    Column("bars_held", "bars", "int"),
)
TRADE_FIELDS = ("seq", "side", "qty", "entry_ts", "entry_time", "exit_ts", "exit_time", "entry_price",
                "exit_price", "gross_pnl", "fees", "pnl", "return_pct", "exit_reason", "bars_held")
TRADE_TIMES = {"entry_ts": "entry_time", "exit_ts": "exit_time"}

EQUITY_COLUMNS = (
    Column("ts", "time (UTC)", "time"), Column("close", "close", "price"), Column("position", "position", "qty"),
    Column("cash", "cash", "money"), Column("equity", "equity", "money"),
    Column("drawdown", "drawdown", "pct"),
)
EQUITY_FIELDS = ("ts", "time", "cash", "position", "close", "equity", "drawdown")
EQUITY_TIMES = {"ts": "time"}

ORDER_COLUMNS = (
    Column("client_id", "id"), Column("ts", "decided (UTC)", "time"), Column("type", "type"),
    Column("reason", "reason"), Column("shown_side", "side"), Column("target_fraction", "target", "fraction"),
    Column("signal", "signal", "signal"), Column("threshold", "threshold", "signal"), Column("status", "status"),
    Column("fill_ts", "filled (UTC)", "time"), Column("fill_price", "fill px", "price"),
    Column("fee", "fee", "money"),
)
ORDER_FIELDS = ("client_id", "ts", "time", "type", "side", "qty", "target_fraction", "price", "reason", "status",
                "signal", "threshold", "model_version", "fill_ts", "fill_time", "fill_side", "fill_qty",
                "fill_price", "fee")
ORDER_TIMES = {"ts": "time", "fill_ts": "fill_time"}

FOLD_COLUMNS = (
    Column("fold_index", "fold", "int"), Column("train_start_ts", "train from", "time"),
    Column("train_end_ts", "train to", "time"), Column("trade_start_ts", "trade from", "time"),
    Column("trade_end_ts", "trade to", "time"), Column("objective", "objective"), Column("seed", "seed", "int"),
    Column("threshold", "threshold", "auto"), Column("train_loss", "train loss", "auto"),
    Column("val_loss", "val loss", "auto"), Column("steps", "steps", "int"),
    Column("train_seconds", "train s", "days"), Column("has_checkpoint", "ckpt"),
)


SIGNED_METRICS = frozenset({"total_return", "cagr", "avg_trade", "avg_trade_pct"})


def metric_column(spec: MetricSpec) -> Column:
    return Column(spec.key, spec.label, spec.kind, signed=spec.key in SIGNED_METRICS)
