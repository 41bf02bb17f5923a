"""Drive one paper run end to end: open the store, take the run's lease, replay, trade live candles.

This is the whole paper command minus argument parsing and printing: the CLI builds
:class:`app.paper_plan.PaperSettings`, calls :func:`run_paper`, and maps the
exceptions it raises to exit statuses. Whatever goes wrong, a run this process owns
is marked failed (never someone else's), and the lease is released at the end.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

from app.registry import get_spec
from app.paper import BarOutcome, PaperSession
from app.paper_plan import PaperSettings, RunPlan, plan_run
from domain.times import ms_to_text
from engine.broker import BrokerConfig
from feeds.ccxt_feed import CcxtCandleClient, open_live_feed
from feeds.errors import FeedStopped
from feeds.retry import call_with_retry
from store.db import init_db
from store.lease import LeaseHeld, LeaseKeeper, LeaseLost, LeaseOwner
from store.repository import load_model_versions, load_run_bars, mark_run
from strategies.base import Strategy

log = logging.getLogger("paper")
WARMUP_LOG_EVERY_BARS = 2000


@dataclass(frozen=True)
class PaperRunSummary:
    run_id: str | None
    live_bars: int
    stopped_by_signal: bool


def run_paper(settings: PaperSettings, strategy: Strategy, stop: threading.Event,
              on_live_bar: Callable[[BarOutcome], None] | None = None) -> PaperRunSummary:
    """Trade ``strategy`` with ``settings`` until ``max_bars`` live candles, ``stop`` is set, or an error.

    ``strategy`` is freshly built (nothing seen yet): a resumed run replays its stored candles through it.

    Raises what went wrong (LeaseHeld/LeaseLost, DataError, StoreError, feed errors,
    ReplayMismatch, SettingsConflict, ValueError); the run is then marked failed if this
    process owned it, except on a lost lease (the run is someone else's now).
    """
    session: PaperSession | None = None
    db = None
    me = LeaseOwner.me()
    plan: RunPlan | None = None
    keeper: LeaseKeeper | None = None
    tf_ms = settings.timeframe_ms
    try:
        db = init_db(settings.db_url, upgrade=settings.upgrade_db)
        client = CcxtCandleClient.connect(settings.exchange, settings.exchange_url, settings.timeout_ms)
        call_with_retry(lambda: client.check_symbol(settings.symbol), what="load_markets", stop_event=stop,
                        logger=log)
        plan = plan_run(settings, db, client, strategy, stop, me)
        keeper = LeaseKeeper(db, plan.run_id, me.token, interval_s=max(0.2, settings.lease_stale_s / 4),
                             on_lost=lambda exc: stop.set()).start()
        session = _open_session(settings, db, plan, strategy, me)
        live_done = _trade(settings, session, plan, client, stop, on_live_bar)
        _raise_if_lost(keeper)
        session.flush()
        session.finish(tf_ms, "stopped")
        log.info("stopped after %d live candles; resume with the same --run-name", live_done)
        return PaperRunSummary(plan.run_id, live_done, False)
    except FeedStopped:
        _raise_if_lost(keeper)
        if session is not None and db is not None:
            session.flush()
            session.finish(tf_ms, "stopped")
        return PaperRunSummary(plan.run_id if plan else None, 0, True)
    except (LeaseHeld, LeaseLost):  # the run is someone else's: write nothing to it
        raise
    except Exception as exc:
        if keeper is None or keeper.lost is None:
            _fail(session, exc)
        raise
    finally:
        if keeper is not None:  # (it exists once the run is planned: the lease is ours from then on)
            keeper.stop_and_release()
        if db is not None:
            db.dispose()  # no connection outlives the run (an in-process caller, a test)


def _open_session(settings: PaperSettings, db: Any, plan: RunPlan, strategy: Any, me: LeaseOwner) -> PaperSession:
    """A session on the planned run; a resumed run first replays its stored candles (and models)."""
    config = BrokerConfig(cash_quote=settings.cash, fee_bps=settings.fee_bps, slippage_bps=settings.slippage_bps,
                          long_only=settings.long_only, maker_fee_bps=settings.maker_fee_bps)
    if plan.resumed:  # strategies that keep trained models reload them (no-op for the others)
        stored = load_model_versions(db, plan.run_id)
        get_spec(settings.strategy).preload_models(
            strategy, [(r.checkpoint, r.losses, r.sample_check) for r in stored if r.checkpoint])
    session = PaperSession(db, plan.run_id, strategy, config, plan.trade_from_ms, lease_token=me.token)
    mark_run(db, plan.run_id, "running", lease_token=me.token)
    if plan.resumed:
        n = session.replay(load_run_bars(db, plan.run_id))
        log.info("resumed run %s (%s): replayed %d stored candles; continuing from %s", plan.run_id[:8],
                 settings.run_name, n, ms_to_text(plan.since_ms, zone=True))
    else:
        log.info("new run %s (%s): warming up from %s, trading from %s", plan.run_id[:8],
                 settings.run_name or "unnamed", ms_to_text(plan.since_ms, zone=True), ms_to_text(plan.trade_from_ms, zone=True))
    return session


def _trade(settings: PaperSettings, session: PaperSession, plan: RunPlan, client: CcxtCandleClient,
           stop: threading.Event, on_live_bar: Callable[[BarOutcome], None] | None) -> int:
    """Feed candles from ``plan.since_ms`` through the session; returns the live candles handled."""
    stale = settings.ws_stale_s if settings.ws_stale_s is not None else min(120.0, 2 * settings.timeframe_ms / 1000)
    feed = open_live_feed(settings.exchange, settings.symbol, settings.timeframe, plan.since_ms, client=client,
                          exchange_url=settings.exchange_url, timeout_ms=settings.timeout_ms, ws=settings.ws,
                          ws_stale_timeout_s=stale, stop_event=stop, poll_interval_s=settings.poll_interval_s)
    live_done = warm_done = 0
    with feed:
        for bar in feed:
            outcome = session.process(bar)
            if not outcome.live:
                warm_done += 1
                if warm_done % WARMUP_LOG_EVERY_BARS == 0:
                    log.info("warm-up: %d candles (at %s)", warm_done, ms_to_text(bar.ts_ms, zone=True))
                continue
            if on_live_bar is not None:
                on_live_bar(outcome)
            live_done += 1
            if settings.max_bars is not None and live_done >= settings.max_bars:
                break
    return live_done


def _raise_if_lost(keeper: LeaseKeeper | None) -> None:
    if keeper is not None and keeper.lost is not None:
        raise keeper.lost


def _fail(session: PaperSession | None, exc: BaseException) -> None:
    """Mark the run failed, only while this process still owns it (never someone else's run)."""
    if session is not None:
        try:
            session.flush()
            mark_run(session.db, session.run_id, "failed", f"{type(exc).__name__}: {exc}",
                     lease_token=session.lease_token)
        except Exception:  # the DB itself may be the problem, or the lease is gone; the message still goes out
            pass
