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
from typing import Any

from sqlalchemy.exc import DBAPIError

from app.paper import BarOutcome, ReplayMismatch
from app.paper_live import run_paper
from app.paper_plan import PaperSettings
from cli.args import (CliParser, UsageError, add_money_flags, bounded_text, http_url, number, print_db_error,
                      print_error, run_name, symbol, timeframe)
from domain.redact import install_log_masking
from domain.times import ms_to_text
from feeds.errors import FatalFeedError, FeedError
from domain.times import timeframe_ms
from feeds.validation import DataError
from store.db import DEFAULT_DB_URL, StoreError
from store.lease import DEFAULT_STALE_AFTER_S, LeaseHeld, LeaseLost
from app.registry import SPECS, get_spec
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
        tf_ms = timeframe_ms(args.timeframe)
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


def log_line(outcome: BarOutcome) -> str:
    b = outcome.bar
    when = ms_to_text(b.ts_ms)
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
    settings = PaperSettings.from_options(vars(args), tf_ms)
    try:
        strategy = make_strategy(args, tf_ms)
        run_paper(settings, strategy, stop,
                  on_live_bar=None if args.quiet else lambda o: print(log_line(o), flush=True))
        return 0
    except FeedError as exc:
        if isinstance(exc, FatalFeedError):
            return print_error(exc)
        return print_error(f"exchange unavailable: {exc}", status=3)
    except (LeaseHeld, LeaseLost, DataError, StoreError, ReplayMismatch, ValueError) as exc:
        return print_error(exc)
    except DBAPIError as exc:  # the database failed mid-run: the candle's commit rolled back, a restart resumes
        return print_db_error(exc)


if __name__ == "__main__":
    sys.exit(main())
