#!/usr/bin/env python3
"""Paper-trade a strategy on live exchange candles (ccxt), restart-safe, with the backtest's own engine.

Nothing here can place a real order: the simulated broker fills at the next
candle's open exactly as in a backtest. Each closed candle's orders, fills,
equity and the run's last processed candle are committed in one transaction;
restarting with the same --run-name replays the stored candles and continues
with the next one, so nothing is lost or duplicated.

Example (against a local test exchange):
  python run_paper.py --exchange binance --exchange-url http://127.0.0.1:8765 \\
      --symbol BTC/USDT --timeframe 1m --db paper.db --run-name demo --max-bars 200

API keys are optional (public candles need none), read only from the environment
(e.g. BINANCE_API_KEY), never stored or logged, and never sent to --exchange-url.
Credentials inside --exchange-url (user:password@, ?apiKey=...) are masked wherever
the URL is stored, logged or shown.

One process drives a run at a time: a second run_paper.py with the same --run-name
and --db refuses in one line naming the owner (host, pid, since). After a crash or
SIGKILL the next start takes over at once on the same host (the owner's pid is gone),
or after --lease-stale-s without a heartbeat from another host.
"""
from __future__ import annotations

import os

# One BLAS/OpenMP thread, set before numpy loads: on 2 shared cores, two BLAS threads made the
# score model's numpy matmuls ~7x slower (1.6 ms -> 10.5 ms per 720-row fold block).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import logging
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any

import pandas as pd

from cli.args import (CliParser, UsageError, add_money_flags, bounded_text, http_url, number, print_error,
                      run_name, symbol, timeframe)
from app.paper import BarOutcome, PaperSession, ReplayMismatch
from engine.broker import BrokerConfig
from feeds.ccxt_live import LiveCandleFeed
from feeds.errors import FatalFeedError, FeedError, FeedStopped
from feeds.retry import call_with_retry
from feeds.series import timeframe_to_ms
from feeds.validation import DataError
from domain.redact import install_log_masking, mask_url
from store.db import DEFAULT_DB_URL, StoreError, init_db
from store.lease import DEFAULT_STALE_AFTER_S, LeaseHeld, LeaseKeeper, LeaseLost, LeaseOwner, acquire_lease, \
    release_lease
from store.repository import (RunNameTaken, RunSpec, create_run, find_run_by_name, get_run, load_model_versions,
                              load_run_bars, mark_run)
from app.registry import SPECS, config_dict, get_spec
from cli.params import add_param_option, add_score_flags, given_params
from strategies.params import ParamError

log = logging.getLogger("paper")
EXCHANGES = ("binance", "bybit")


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exchange", default="binance", choices=EXCHANGES, help="exchange to read candles from")
    p.add_argument("--symbol", type=symbol, default="BTC/USDT", help="market symbol (default %(default)s)")
    p.add_argument("--timeframe", type=timeframe, default="1h", help="candle timeframe (default %(default)s)")
    p.add_argument("--strategy", default="score", choices=sorted(SPECS), help="strategy (default %(default)s)")
    p.add_argument("--db", type=bounded_text(4096, "--db"), default=DEFAULT_DB_URL,
                   help="SQLAlchemy URL or SQLite file (default %(default)s)")
    p.add_argument("--run-name", type=run_name,
                   help="name of the run (at most 200 characters); restarting with the same name resumes it")
    p.add_argument("--upgrade-db", action="store_true",
                   help="migrate a --db made by an older version of this tool to the current schema first "
                        "(back it up before; without this flag an older database is refused)")
    p.add_argument("--exchange-url", type=http_url,
                   help="send ALL exchange traffic to this base URL (local mirror / test server); API keys are "
                        "never sent there, credentials in it are never stored or logged")
    p.add_argument("--ws", action="store_true", help="receive candles over the websocket (REST catch-up)")
    p.add_argument("--ws-stale-s", type=number(float, lo=0, hi=3600, lo_open=True), default=None,
                   help="reconnect a websocket that is quiet this long, in (0, 3600] s "
                        "(default: 2 timeframes, max 120 s)")
    p.add_argument("--max-bars", type=number(int, lo=1, hi=10**9), default=None,
                   help="stop cleanly after this process has handled N (>= 1) closed live candles")
    add_money_flags(p)
    p.add_argument("--warmup-bars", type=number(int, lo=0, hi=10**7), default=None,
                   help="history candles (>= 0) fed to the strategy before trading (default: what it needs)")
    p.add_argument("--poll-interval", type=number(float, lo=0, hi=3600, lo_open=True), default=10.0,
                   help="longest sleep between REST polls in seconds, in (0, 3600] (default 10)")
    p.add_argument("--timeout-ms", type=number(int, lo=1, hi=600_000), default=10_000,
                   help="HTTP timeout per request in ms, in [1, 600000] (default 10000)")
    p.add_argument("--lease-stale-s", type=number(float, lo=1, hi=86_400), default=DEFAULT_STALE_AFTER_S,
                   help="another host may take the run over after this many seconds without a heartbeat "
                        f"from its owner (default {DEFAULT_STALE_AFTER_S:g}; on the same host a dead owner "
                        "is replaced at once)")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-candle log lines")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_param_option(p)
    add_score_flags(p)
    return p


def validate(args: argparse.Namespace) -> int:
    """Checks beyond single flags, before anything is opened or written; returns the timeframe in ms."""
    try:
        tf_ms = timeframe_to_ms(args.timeframe)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    make_strategy(args, tf_ms)  # parameter names, types and the strategy's own checks
    return tf_ms


def make_strategy(args: argparse.Namespace, tf_ms: int) -> Any:
    """The strategy the flags describe (score flags and --param NAME=VALUE); bad ones are a UsageError."""
    spec = get_spec(args.strategy)
    try:
        given = spec.with_broker(given_params(args, args.strategy), long_only=args.long_only,
                                 fee_bps=args.fee_bps, slippage_bps=args.slippage_bps,
                                 maker_fee_bps=args.maker_fee_bps)
        return spec.build(spec.resolve(given), tf_ms)
    except (ParamError, ValueError) as exc:
        raise UsageError(str(exc)) from None


@dataclass
class RunPlan:
    run_id: str
    trade_from_ms: int
    since_ms: int
    resumed: bool


def plan_run(args: argparse.Namespace, db: Any, client: Any, strategy: Any, tf_ms: int,
             stop: threading.Event, me: LeaseOwner) -> RunPlan:
    """Resume the named run, or create a new one whose live trading starts with the next candle.

    Either way this process holds the run's lease when this returns (LeaseHeld otherwise),
    and nothing of the run has been written before the lease was ours.
    """
    for _ in range(3):
        existing = find_run_by_name(db, args.run_name) if args.run_name else None
        if existing is not None:
            _check_resumable(args, existing, strategy)
            acquire_lease(db, existing.id, me, run_label=repr(args.run_name), stale_after_s=args.lease_stale_s)
            current = get_run(db, existing.id)  # the previous owner may have committed more candles meanwhile
            assert current is not None
            since = (current.last_bar_ts + tf_ms) if current.last_bar_ts is not None \
                else int(current.params.get("history_from_ts"))
            return RunPlan(current.id, int(current.trade_from_ts), since, True)
        now = call_with_retry(client.server_time_ms, what="fetch_time", stop_event=stop, logger=log)
        trade_from = (now // tf_ms) * tf_ms  # the candle in progress now is the first live one
        warmup = args.warmup_bars if args.warmup_bars is not None else strategy.warmup_bars(tf_ms)
        since = trade_from - warmup * tf_ms
        params = {k: v for k, v in vars(args).items() if k not in ("db", "verbose", "quiet", "upgrade_db")}
        params["history_from_ts"] = since
        params["warmup_bars"] = warmup
        params["config"] = config_dict(strategy)
        try:
            run_id = create_run(db, RunSpec(mode="paper", strategy=args.strategy, initial_cash=args.cash,
                                            params=params, name=args.run_name, symbol=args.symbol,
                                            exchange=args.exchange, timeframe=args.timeframe,
                                            data_source=_source(args), trade_from_ts=trade_from),
                                extra_rows=[me.new_row()])  # born leased: no window for a second process
        except RunNameTaken:
            continue  # another process created it a moment ago: resume it, or refuse if it is held
        return RunPlan(run_id, trade_from, since, False)
    raise StoreError(f"run {args.run_name!r} keeps appearing and disappearing; is another program deleting it?")


def _check_resumable(args: argparse.Namespace, existing: Any, strategy: Any) -> None:
    """Refuse (UsageError) to resume a run with settings that would change its stored candles' results."""
    expected = {"mode": "paper", "strategy": args.strategy, "symbol": args.symbol,
                "timeframe": args.timeframe, "exchange": args.exchange}
    actual = {k: getattr(existing, k) for k in expected}
    if actual != expected:
        diff = ", ".join(f"{k}: stored {actual[k]!r} vs given {expected[k]!r}" for k in expected
                         if actual[k] != expected[k])
        raise UsageError(f"run {args.run_name!r} exists with other settings ({diff}); use another --run-name")
    stored, given = existing.params or {}, _money_and_model_settings(args, strategy)
    changed = [f"{k}: stored {stored.get(k)!r} vs given {v!r}" for k, v in given.items()
               if k in stored and stored.get(k) != v]
    if existing.initial_cash != args.cash:
        changed.insert(0, f"cash: stored {existing.initial_cash!r} vs given {args.cash!r}")
    if changed:
        raise UsageError(f"run {args.run_name!r} was started with other settings ({'; '.join(changed)}); "
                         "resume it with the same options or use another --run-name")


def _money_and_model_settings(args: argparse.Namespace, strategy: Any) -> dict[str, Any]:
    """Settings a resumed run must keep: they change fills or decisions of candles already stored."""
    settings: dict[str, Any] = {"fee_bps": args.fee_bps, "maker_fee_bps": args.maker_fee_bps,
                                "slippage_bps": args.slippage_bps,
                                "long_only": args.long_only,
                                "config": config_dict(strategy)}
    if args.warmup_bars is not None:
        settings["warmup_bars"] = args.warmup_bars
    return settings


def _source(args: argparse.Namespace) -> str:
    via = f" via {mask_url(args.exchange_url)}" if args.exchange_url else ""
    return f"{args.exchange}:{args.symbol}:{args.timeframe}{via}"


def log_line(outcome: BarOutcome) -> str:
    b = outcome.bar
    when = pd.Timestamp(b.ts_ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")
    action = ", ".join(_describe(o) for o in outcome.orders) or "hold"
    sig = "–" if outcome.signal is None else f"{outcome.signal:+.3f}"
    thr = "–" if outcome.threshold is None else f"{outcome.threshold:.3f}"
    eq = "–" if outcome.equity is None else f"{outcome.equity:,.2f}"
    return f"{when} close={b.close:,.2f} signal={sig} threshold={thr} action={action} fills={outcome.fills} equity={eq}"


def _describe(order: Any) -> str:
    if order.target_fraction is not None and order.type.value == "market":
        what = "flat" if order.target_fraction == 0 else ("long" if order.target_fraction > 0 else "short")
        return f"{order.reason}→{what}"
    return f"{order.type.value} {order.side.value if order.side else ''} @{order.price:,.2f}".strip()


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        tf_ms = validate(args)
    except UsageError as exc:
        return print_error(exc)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_masking()
    logging.getLogger("ccxt").setLevel(logging.WARNING)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: (stop.set(), log.info("stop requested: finishing the current candle")))
    session: PaperSession | None = None
    db = None
    me = LeaseOwner.me()
    plan: RunPlan | None = None
    keeper: LeaseKeeper | None = None
    try:
        db = init_db(args.db, upgrade=args.upgrade_db)
        from feeds.ccxt_feed import CcxtCandleClient, CcxtKlineStream

        client = CcxtCandleClient.connect(args.exchange, args.exchange_url, args.timeout_ms)
        call_with_retry(lambda: client.check_symbol(args.symbol), what="load_markets", stop_event=stop, logger=log)
        strategy = make_strategy(args, tf_ms)
        plan = plan_run(args, db, client, strategy, tf_ms, stop, me)
        keeper = LeaseKeeper(db, plan.run_id, me.token, interval_s=max(0.2, args.lease_stale_s / 4),
                             on_lost=lambda exc: stop.set()).start()
        config = BrokerConfig(cash_quote=args.cash, fee_bps=args.fee_bps, slippage_bps=args.slippage_bps,
                              long_only=args.long_only, maker_fee_bps=args.maker_fee_bps)
        if plan.resumed:
            stored = load_model_versions(db, plan.run_id)
            get_spec(args.strategy).preload_models(
                strategy, [(r.checkpoint, r.losses, r.sample_check) for r in stored if r.checkpoint])
        session = PaperSession(db, plan.run_id, strategy, config, plan.trade_from_ms, lease_token=me.token)
        mark_run(db, plan.run_id, "running", lease_token=me.token)
        if plan.resumed:
            bars = load_run_bars(db, plan.run_id)
            n = session.replay(bars)
            log.info("resumed run %s (%s): replayed %d stored candles; continuing from %s", plan.run_id[:8],
                     args.run_name, n, _iso(plan.since_ms))
        else:
            log.info("new run %s (%s): warming up from %s, trading from %s", plan.run_id[:8],
                     args.run_name or "unnamed", _iso(plan.since_ms), _iso(plan.trade_from_ms))
        stream = None
        if args.ws:
            stale = args.ws_stale_s if args.ws_stale_s is not None else min(120.0, 2 * tf_ms / 1000)
            stream = CcxtKlineStream(args.exchange, args.symbol, args.timeframe, exchange_url=args.exchange_url,
                                     timeout_ms=args.timeout_ms, stale_timeout_s=stale)
        feed = LiveCandleFeed(client, args.symbol, args.timeframe, plan.since_ms, stop_event=stop,
                              poll_interval_s=args.poll_interval, stream=stream, owns_client=True)
        live_done = 0
        warm_done = 0
        with feed:
            for bar in feed:
                outcome = session.process(bar)
                if not outcome.live:
                    warm_done += 1
                    if warm_done % 2000 == 0:
                        log.info("warm-up: %d candles (at %s)", warm_done, _iso(bar.ts_ms))
                    continue
                if not args.quiet:
                    print(log_line(outcome), flush=True)
                live_done += 1
                if args.max_bars is not None and live_done >= args.max_bars:
                    break
        _raise_if_lost(keeper)
        session.flush()
        session.finish(tf_ms, "stopped")
        log.info("stopped after %d live candles; resume with the same --run-name", live_done)
        return 0
    except FeedStopped:
        if keeper is not None and keeper.lost is not None:
            return print_error(keeper.lost)
        if session is not None and db is not None:
            session.flush()
            session.finish(tf_ms, "stopped")
        return 0
    except (LeaseHeld, LeaseLost) as exc:  # the run is someone else's: write nothing to it
        return print_error(exc)
    except (UsageError, DataError, StoreError, FatalFeedError, ReplayMismatch, ValueError) as exc:
        _fail(db, session, exc)
        return print_error(exc)
    except FeedError as exc:
        _fail(db, session, exc)
        return print_error(f"exchange unavailable: {exc}", status=3)
    finally:
        if keeper is not None:
            keeper.stop()
        if plan is not None and db is not None and (keeper is None or keeper.lost is None):
            try:
                release_lease(db, plan.run_id, me.token)
            except Exception:  # a dead DB: the lease goes stale by itself
                pass


def _raise_if_lost(keeper: LeaseKeeper | None) -> None:
    if keeper is not None and keeper.lost is not None:
        raise keeper.lost


def _fail(db: Any, session: PaperSession | None, exc: BaseException) -> None:
    """Mark the run failed, only while this process still owns it (never someone else's run)."""
    if db is not None and session is not None:
        try:
            session.flush()
            mark_run(db, session.run_id, "failed", f"{type(exc).__name__}: {exc}", lease_token=session.lease_token)
        except Exception:  # the DB itself may be the problem, or the lease is gone; the message still goes out
            pass


def _iso(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M UTC")


if __name__ == "__main__":
    sys.exit(main())
