"""Small factories shared by the core tests (STYLE.md §14): bars, fills, trades, a scripted strategy."""
from __future__ import annotations

from typing import Any, Callable, Sequence

from engine.broker import BrokerConfig
from engine.loop import Engine, EngineEvents
from domain.types import Bar, Fill, Side, Trade
from strategies.base import Strategy

T0_MS = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000  # an hour-aligned open time
HOUR_MS = 3_600_000


def ts(i: int) -> int:
    """Open time of bar ``i`` in the hand-written tables."""
    return T0_MS + i * HOUR_MS


def make_bar(i: int, o: float, h: float, l: float, c: float, v: float = 1.0) -> Bar:
    return Bar(ts(i), float(o), float(h), float(l), float(c), float(v))


def make_bars(rows: Sequence[tuple[float, float, float, float]]) -> list[Bar]:
    """Rows of (open, high, low, close), bar i at ts(i)."""
    return [make_bar(i, *row) for i, row in enumerate(rows)]


def flat_bars(n: int, price: float) -> list[Bar]:
    return [make_bar(i, price, price, price, price) for i in range(n)]


def make_fill(i: int, side: str, qty: float, price: float, fee: float, reason: str = "r",
              order_id: str = "f") -> Fill:
    return Fill(order_id, ts(i), Side(side), qty, price, fee, reason)


def make_trade(pnl: float, return_pct: float = 0.0) -> Trade:
    return Trade(side="long", qty=1.0, entry_ts_ms=ts(0), exit_ts_ms=ts(1), entry_price=100.0,
                 exit_price=100.0 + pnl, gross_pnl_quote=pnl, fees_quote=0.0, pnl_quote=pnl,
                 return_pct=return_pct, exit_reason="x", bars_held=1)


Action = tuple  # ("target", fraction, reason) | ("close", reason) | ("market", side, qty, reason)
#               | ("stop"|"limit", side, price, reason, qty|None, oco|None) | ("cancel_all",)


class Scripted(Strategy):
    """Submits the given actions through ctx at the close of the given bar indexes."""

    name = "scripted"

    def __init__(self, script: dict[int, list[Action]]) -> None:
        self.script = script
        self.index = -1

    def on_bar(self, bar: Bar, ctx: Any) -> None:
        self.index += 1
        for action in self.script.get(self.index, []):
            apply_action(ctx, action)


def apply_action(ctx: Any, action: Action) -> None:
    kind, *args = action
    if kind == "target":
        ctx.target_percent(args[0], args[1])
    elif kind == "close":
        ctx.close(args[0])
    elif kind == "market":
        ctx.market(Side(args[0]), args[1], args[2])
    elif kind in ("stop", "limit"):
        side, price, reason = args[:3]
        qty = args[3] if len(args) > 3 else None
        oco = args[4] if len(args) > 4 else None
        getattr(ctx, kind)(Side(side), price, reason, qty=qty, oco_group=oco)
    elif kind == "cancel_all":
        ctx.cancel_all()
    else:  # pragma: no cover - a typo in a table
        raise ValueError(f"unknown action {kind!r}")


class CallbackStrategy(Strategy):
    """Calls ``fn(index, bar, ctx)`` at every close (for property tests)."""

    def __init__(self, fn: Callable[[int, Bar, Any], None]) -> None:
        self.fn = fn
        self.index = -1

    def on_bar(self, bar: Bar, ctx: Any) -> None:
        self.index += 1
        self.fn(self.index, bar, ctx)


def run(strategy: Strategy, bars: Sequence[Bar], **config: Any) -> tuple[Engine, EngineEvents]:
    trade_from_ms = config.pop("trade_from_ms", None)
    engine = Engine(strategy, BrokerConfig(**config), trade_from_ms=trade_from_ms)
    events = engine.run(bars)
    return engine, events
