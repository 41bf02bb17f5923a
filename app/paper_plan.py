"""Which paper run this process drives: resume the named run or create a new one, under its lease.

A resumed run must keep every setting that changed the fills or decisions of the
candles it already stored (money settings, the strategy config, the warm-up), so a
resume with other settings is refused before anything is written.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.registry import config_dict
from domain.redact import mask_url
from feeds.retry import call_with_retry
from store.db import StoreError
from store.lease import LeaseOwner, acquire_lease
from store.repository import RunNameTaken, RunSpec, create_run, find_run_by_name, get_run

log = logging.getLogger("paper")

# Options that say where/how to run, not what the run is: never stored with the run.
_NOT_STORED = ("db", "verbose", "quiet", "upgrade_db")


class SettingsConflict(ValueError):
    """The named run exists with settings that differ from the ones given (reported as bad input)."""


@dataclass(frozen=True)
class PaperSettings:
    """One paper run's resolved settings (from the command line or a notebook).

    ``options`` holds every option as given; all of them except ``_NOT_STORED`` are
    stored with a new run (its ``params``), and the strategy factory reads its own from them.
    """

    exchange: str
    symbol: str
    timeframe: str
    timeframe_ms: int
    strategy: str
    db_url: str
    run_name: str | None
    cash: float
    fee_bps: float
    maker_fee_bps: float | None
    slippage_bps: float
    long_only: bool
    warmup_bars: int | None
    exchange_url: str | None
    timeout_ms: int
    ws: bool
    ws_stale_s: float | None
    poll_interval_s: float
    max_bars: int | None
    lease_stale_s: float
    upgrade_db: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: dict[str, Any], timeframe_ms: int) -> "PaperSettings":
        """From the parsed command line (``vars(args)``) and the timeframe it was checked to have."""
        o = options
        return cls(exchange=o["exchange"], symbol=o["symbol"], timeframe=o["timeframe"], timeframe_ms=timeframe_ms,
                   strategy=o["strategy"], db_url=o["db"], run_name=o["run_name"], cash=o["cash"],
                   fee_bps=o["fee_bps"], maker_fee_bps=o["maker_fee_bps"], slippage_bps=o["slippage_bps"],
                   long_only=o["long_only"], warmup_bars=o["warmup_bars"], exchange_url=o["exchange_url"],
                   timeout_ms=o["timeout_ms"], ws=o["ws"], ws_stale_s=o["ws_stale_s"],
                   poll_interval_s=o["poll_interval"], max_bars=o["max_bars"], lease_stale_s=o["lease_stale_s"],
                   upgrade_db=o.get("upgrade_db", False), options=dict(o))

    @property
    def stored_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.options.items() if k not in _NOT_STORED}

    @property
    def data_source(self) -> str:
        """Where the candles come from, with any credentials in --exchange-url masked."""
        via = f" via {mask_url(self.exchange_url)}" if self.exchange_url else ""
        return f"{self.exchange}:{self.symbol}:{self.timeframe}{via}"


@dataclass
class RunPlan:
    run_id: str
    trade_from_ms: int
    since_ms: int
    resumed: bool


class ServerClock(Protocol):
    def server_time_ms(self) -> int: ...


def plan_run(settings: PaperSettings, db: Any, client: ServerClock, strategy: Any,
             stop: threading.Event, me: LeaseOwner) -> RunPlan:
    """Resume the named run, or create a new one whose live trading starts with the next candle.

    Either way this process holds the run's lease when this returns (LeaseHeld otherwise),
    and nothing of the run has been written before the lease was ours.
    """
    tf_ms = settings.timeframe_ms
    for _ in range(3):
        existing = find_run_by_name(db, settings.run_name) if settings.run_name else None
        if existing is not None:
            check_resumable(settings, existing, strategy)
            acquire_lease(db, existing.id, me, run_label=repr(settings.run_name),
                          stale_after_s=settings.lease_stale_s)
            current = get_run(db, existing.id)  # the previous owner may have committed more candles meanwhile
            if current is None:
                raise StoreError(f"run {settings.run_name!r} was deleted while this process took it over")
            since = (current.last_bar_ts + tf_ms) if current.last_bar_ts is not None \
                else int(current.params.get("history_from_ts"))
            return RunPlan(current.id, int(current.trade_from_ts), since, True)
        now = call_with_retry(client.server_time_ms, what="fetch_time", stop_event=stop, logger=log)
        trade_from = (now // tf_ms) * tf_ms  # the candle in progress now is the first live one
        warmup = settings.warmup_bars if settings.warmup_bars is not None else strategy.warmup_bars(tf_ms)
        since = trade_from - warmup * tf_ms
        params = settings.stored_params
        params["history_from_ts"] = since
        params["warmup_bars"] = warmup
        params["config"] = config_dict(strategy)
        try:
            run_id = create_run(db, RunSpec(mode="paper", strategy=settings.strategy, initial_cash=settings.cash,
                                            params=params, name=settings.run_name, symbol=settings.symbol,
                                            exchange=settings.exchange, timeframe=settings.timeframe,
                                            data_source=settings.data_source, trade_from_ts=trade_from),
                                extra_rows=[me.new_row()])  # born leased: no window for a second process
        except RunNameTaken:
            continue  # another process created it a moment ago: resume it, or refuse if it is held
        return RunPlan(run_id, trade_from, since, False)
    raise StoreError(f"run {settings.run_name!r} keeps appearing and disappearing; "
                     "is another program deleting it?")


def check_resumable(settings: PaperSettings, existing: Any, strategy: Any) -> None:
    """Refuse (SettingsConflict) to resume a run with settings that would change its stored candles' results."""
    expected = {"mode": "paper", "strategy": settings.strategy, "symbol": settings.symbol,
                "timeframe": settings.timeframe, "exchange": settings.exchange}
    actual = {k: getattr(existing, k) for k in expected}
    if actual != expected:
        diff = ", ".join(f"{k}: stored {actual[k]!r} vs given {expected[k]!r}" for k in expected
                         if actual[k] != expected[k])
        raise SettingsConflict(f"run {settings.run_name!r} exists with other settings ({diff}); "
                               "use another --run-name")
    stored, given = existing.params or {}, money_and_model_settings(settings, strategy)
    changed = [f"{k}: stored {stored.get(k)!r} vs given {v!r}" for k, v in given.items()
               if k in stored and stored.get(k) != v]
    if existing.initial_cash != settings.cash:
        changed.insert(0, f"cash: stored {existing.initial_cash!r} vs given {settings.cash!r}")
    if changed:
        raise SettingsConflict(f"run {settings.run_name!r} was started with other settings "
                               f"({'; '.join(changed)}); resume it with the same options or use another --run-name")


def money_and_model_settings(settings: PaperSettings, strategy: Any) -> dict[str, Any]:
    """Settings a resumed run must keep: they change fills or decisions of candles already stored."""
    out: dict[str, Any] = {"fee_bps": settings.fee_bps, "maker_fee_bps": settings.maker_fee_bps,
                           "slippage_bps": settings.slippage_bps, "long_only": settings.long_only,
                           "config": config_dict(strategy)}
    if settings.warmup_bars is not None:
        out["warmup_bars"] = settings.warmup_bars
    return out
