"""Argument types and shared flags for every command line (checked before anything is written).

Every numeric flag goes through one of the type functions here, so ``nan``, ``inf``,
``1e309``, an empty string or an out-of-range value is refused by argparse itself,
before a database is opened or a run row exists. Errors are ONE line on stderr
(``error: --cash must be a finite number > 0, got 'nan'``) with exit status 2:
:class:`CliParser` turns argparse's usage block into :class:`UsageError`, which the
programs print like every other bad-input error.
"""
from __future__ import annotations

import argparse
import math
import re
import signal
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, NoReturn
from urllib.parse import urlsplit

from domain.redact import mask_text, mask_url

# Column widths of the runs table (store/schema.py): a longer value would fail at INSERT time.
RUN_NAME_MAX = 200
SYMBOL_MAX = 64
TIMEFRAME_MAX = 16
MAX_CASH_QUOTE = 1e15  # beyond this, equity arithmetic loses cents and metrics can overflow
_TIMEFRAME = re.compile(r"([1-9]\d{0,5})([smhdw])")


class UsageError(Exception):
    """A bad argument: reported in one line, exit status 2."""


class CliParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are a one-line :class:`UsageError`, not a usage block.

    ``argument --cash: must be ...`` becomes ``--cash must be ...``. Sub-command parsers
    made through ``add_subparsers`` inherit this class.
    """

    def error(self, message: str) -> NoReturn:
        message = re.sub(r"^argument ([^:]+): ", lambda m: m.group(1).split("/")[-1] + " ", message)
        raise UsageError(" ".join(message.split()))


def _flag_value(text: str) -> str:
    shown = text if len(text) <= 40 else text[:37] + "..."
    return repr(shown)


def _number(text: str, kind: Callable[[str], Any]) -> Any:
    try:
        if kind is int:
            value = int(text.strip())
        else:
            value = float(text)
    except (ValueError, OverflowError, AttributeError):
        noun = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"must be {noun}, got {_flag_value(text)}") from None
    if kind is not int and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {_flag_value(text)}")
    return value


def _range_text(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi:g}"
    return "finite"


def number(kind: type = float, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
           hi_open: bool = False) -> Callable[[str], Any]:
    """An argparse type: a finite ``kind`` (int or float) within [lo, hi] (ends open when asked)."""
    if kind not in (int, float):
        raise TypeError("kind must be int or float")
    wanted = _range_text(lo, hi, lo_open, hi_open)
    noun = "an integer" if kind is int else "a finite number"

    def parse(text: str) -> Any:
        value = _number(text, kind)
        too_low = lo is not None and (value <= lo if lo_open else value < lo)
        too_high = hi is not None and (value >= hi if hi_open else value > hi)
        if too_low or too_high:
            raise argparse.ArgumentTypeError(f"must be {noun} {wanted}, got {value!r}")
        return value

    parse.numeric = True  # type: ignore[attr-defined]  # lets tests find every numeric flag
    parse.__name__ = f"{kind.__name__} {wanted}"
    return parse


def finite_float(text: str) -> float:
    """Any finite float (e.g. a P&L filter that may be negative)."""
    return _number(text, float)


finite_float.numeric = True  # type: ignore[attr-defined]


def bounded_text(max_chars: int, what: str = "value") -> Callable[[str], str]:
    """A non-empty string of at most ``max_chars`` characters (the DB column's width)."""
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"{what} must not be empty")
        if len(text) > max_chars:
            raise argparse.ArgumentTypeError(f"{what} is {len(text):,} characters long; at most {max_chars} allowed")
        if any(ord(c) < 32 for c in text):
            raise argparse.ArgumentTypeError(f"{what} must not contain control characters")
        return text

    parse.__name__ = what
    return parse


run_name = bounded_text(RUN_NAME_MAX, "run name")
symbol = bounded_text(SYMBOL_MAX, "symbol")


def timeframe(text: str) -> str:
    """A candle length like 1m, 15m, 1h, 4h, 1d, 1w (a positive count and a unit)."""
    if not _TIMEFRAME.fullmatch(text or ""):
        raise argparse.ArgumentTypeError(f"must be a timeframe like 1m, 15m, 1h, 4h, 1d or 1w, got "
                                         f"{_flag_value(text)}")
    return text


def http_url(text: str) -> str:
    """An http(s) base URL with a host, no query string or fragment (credentials are masked in errors)."""
    try:
        parts = urlsplit(text)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        parts, port_ok = None, False
    if (parts is None or not port_ok or parts.scheme not in ("http", "https") or not parts.hostname
            or parts.query or parts.fragment or len(text) > 2000):
        raise argparse.ArgumentTypeError("must be an http(s) base URL like http://127.0.0.1:8765 (no query "
                                         f"string), got {mask_url(text)!r}")
    return text


# ---------------------------------------------------------------------- shared flags
CASH = number(float, lo=0, hi=MAX_CASH_QUOTE, lo_open=True)
BPS = number(float, lo=0, hi=10_000, hi_open=True)


def add_money_flags(parser: argparse.ArgumentParser) -> None:
    """--cash, the fee schedule (--fee-bps = --taker-fee-bps, --maker-fee-bps), --slippage-bps and
    --long-only, with the same checks in every command."""
    parser.add_argument("--cash", type=CASH, default=100_000.0,
                        help=f"starting cash in quote currency, > 0 and <= {MAX_CASH_QUOTE:g} (default 100000)")
    parser.add_argument("--fee-bps", type=BPS, default=10.0,
                        help="taker fee per fill (market, stop and marketable limit fills) in basis points of "
                             "notional, in [0, 10000) (default 10)")
    parser.add_argument("--taker-fee-bps", type=BPS, dest="fee_bps",
                        help="another name for --fee-bps (the last one given wins)")
    parser.add_argument("--maker-fee-bps", type=BPS, default=None,
                        help="fee of limit fills that rested in the book first, in bps, in [0, 10000) "
                             "(default: the taker fee)")
    parser.add_argument("--slippage-bps", type=BPS, default=0.0,
                        help="adverse slippage per market/stop fill in bps, in [0, 10000) (default 0)")
    parser.add_argument("--long-only", action="store_true", help="never open short positions")


def print_error(problem: BaseException | str, status: int = 2, prefix: str = "error: ") -> int:
    """Print ``problem`` as ONE line on stderr (URLs masked) and return ``status`` (2: bad input)."""
    import sys

    print(f"{prefix}{' '.join(mask_text(str(problem)).split())}", file=sys.stderr)
    return status


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch system's stop, ``kill``), raised like Ctrl-C's KeyboardInterrupt."""

    def __str__(self) -> str:
        return "stopped by SIGTERM"


INTERRUPTED_STATUS = 130  # 128 + SIGINT
TERMINATED_STATUS = 143  # 128 + SIGTERM


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` in the main thread, so a stop sent by
    a scheduler or ``kill`` ends a run as Ctrl-C does: the run in progress marked failed and rolled
    back, a sweep's finished runs kept. (Elsewhere than the main thread: left as it is.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted_status(exc: KeyboardInterrupt) -> int:
    return TERMINATED_STATUS if isinstance(exc, Terminated) else INTERRUPTED_STATUS


def print_db_error(exc: BaseException) -> int:
    """A database failure during a run as ONE line: "database unavailable" with status 3 when the
    server went away, refused or was busy (OperationalError, InterfaceError: try again later, as
    with an unreachable exchange), "database error" with status 1 for anything else. The driver's
    first line only: no SQL, parameters or SQLAlchemy's help link."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    from store.db import error_line

    text = error_line(exc)
    if isinstance(exc, (OperationalError, InterfaceError)):
        return print_error(f"database unavailable: {text}", status=3)
    return print_error(f"database error: {text}", status=1)


def time_text(flag: str) -> Callable[[str], str]:
    """An argparse type for a point in time: ISO-8601 (UTC unless stated) or epoch ms, 1970..2200.

    Returns the text unchanged (it is stored with the run as given); the caller converts it
    with ``domain.times.parse_time_ms``, which is known to succeed.
    """
    from domain.times import parse_time_ms

    def parse(text: str) -> str:
        try:
            ms = parse_time_ms(text, flag) if text.strip() else None
        except (ValueError, OverflowError) as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{flag}: ")) from None
        if ms is None or not 0 <= ms < 7_258_118_400_000:  # 2200-01-01
            raise argparse.ArgumentTypeError("must be a date/time between 1970 and 2200 (ISO-8601, UTC unless "
                                             f"stated) or epoch milliseconds, got {_flag_value(text)}")
        return text

    parse.numeric = True  # type: ignore[attr-defined]
    parse.__name__ = "time"
    return parse
