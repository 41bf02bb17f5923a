"""Time in one place: timeframes, the epoch-unit rule, user-given times and how times print.

Every time inside the project is an ``int`` of milliseconds since the Unix epoch, UTC,
and a bar's time is its candle's **open** time.

Rules that every command shares (documented in the README):

* **Ranges are half-open:** a start (``--start``, ``--from``, ``--since``, ``--trade-from``)
  is inclusive, an end (``--end``, ``--to``, ``--until``) is exclusive. A bare date is its
  midnight UTC, so ``--start 2024-01-01 --end 2024-02-01`` is exactly January.
* **One epoch-unit rule**, for numbers typed on the command line and numbers in data
  files alike, decided by magnitude: below 1e11 seconds, below 1e14 milliseconds,
  below 1e17 microseconds, else nanoseconds. (1e11 ms is March 1973 and 1e11 s is the
  year 5138, so no real candle time is ambiguous.)
* **Timeframes** are ccxt spellings ``<n><s|m|h|d|w>`` with n ≥ 1 (``1s``, ``15m``, ``4h``,
  ``1w``); calendar months are refused because their length varies.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

MS_PER_SECOND = 1_000
MS_PER_MINUTE = 60_000
MS_PER_HOUR = 3_600_000
MS_PER_DAY = 86_400_000
MS_PER_WEEK = 7 * MS_PER_DAY

_UNIT_MS = {"s": MS_PER_SECOND, "m": MS_PER_MINUTE, "h": MS_PER_HOUR, "d": MS_PER_DAY, "w": MS_PER_WEEK}
# Weekly candles open on Monday 00:00 UTC; 1970-01-01 was a Thursday, 4 days after one.
_WEEK_OFFSET_MS = 4 * MS_PER_DAY

# ---------------------------------------------------------------------- timeframes


def timeframe_ms(timeframe: str) -> int:
    """Length of one candle in ms: ``timeframe_ms("1h") == 3_600_000``; ValueError otherwise."""
    match = re.fullmatch(r"(\d+)([smhdw])", (timeframe or "").strip())
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"unsupported timeframe {timeframe!r}: use e.g. 1m, 5m, 1h, 4h, 1d, 1w "
                         "(calendar months are not supported)")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def timeframe_name(ms: int) -> str:
    """The shortest ccxt spelling of a candle length: 3,600,000 → ``"1h"``, 5,400,000 → ``"90m"``."""
    for unit in ("w", "d", "h", "m", "s"):
        if ms > 0 and ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


def is_aligned(ts_ms: int, tf_ms: int) -> bool:
    """True when ``ts_ms`` is a valid candle open time for a ``tf_ms`` timeframe (UTC)."""
    if tf_ms % MS_PER_WEEK == 0:
        return (ts_ms - _WEEK_OFFSET_MS) % tf_ms == 0
    return ts_ms % tf_ms == 0


def floor_to_timeframe(ts_ms: int, tf_ms: int) -> int:
    """Open time of the candle that contains ``ts_ms``."""
    offset = _WEEK_OFFSET_MS if tf_ms % MS_PER_WEEK == 0 else 0
    return ts_ms - (ts_ms - offset) % tf_ms


# ---------------------------------------------------------------------- epoch units

EPOCH_UNITS: tuple[tuple[str, float, float], ...] = (
    # (name, upper bound of the magnitude, milliseconds per unit)
    ("s", 1e11, 1000.0),
    ("ms", 1e14, 1.0),
    ("µs", 1e17, 1e-3),
    ("ns", float("inf"), 1e-6),
)


def epoch_unit(value: float) -> tuple[str, float]:
    """``(unit name, ms per unit)`` of an epoch number by its magnitude (the one rule above)."""
    magnitude = abs(value)
    for name, upper, ms_per_unit in EPOCH_UNITS:
        if magnitude < upper:
            return name, ms_per_unit
    raise AssertionError("unreachable: the last unit is unbounded")


def epoch_to_ms(value: int) -> int:
    """An epoch number in any unit (by magnitude) → ms. Sub-ms parts are refused by callers."""
    _, ms_per_unit = epoch_unit(value)
    return int(value * ms_per_unit) if ms_per_unit >= 1 else int(value) // int(round(1 / ms_per_unit))


# ---------------------------------------------------------------------- user-given times


@dataclass(frozen=True)
class TimeBound:
    """A parsed command-line time: its instant (ms UTC) and whether it was a bare date."""

    ts_ms: int
    date_only: bool


def parse_time(text: str) -> TimeBound:
    """``2024-03-01``, ``2024-03-01T12:00``, ``2024-03-01 12:00:00Z``, ``+02:00`` offsets, or an
    epoch number (unit by magnitude). Naive values are UTC. ValueError with a readable message."""
    raw = (text or "").strip()
    if raw.isdigit():
        return TimeBound(epoch_to_ms(int(raw)), date_only=False)
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a date, date-time or epoch timestamp: {text!r} "
                         "(e.g. 2024-03-01, 2024-03-01T12:00Z, 1709251200000)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    delta = value - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return TimeBound(delta // timedelta(milliseconds=1), date_only=len(raw) == 10)


def parse_time_ms(text: str | None, flag: str = "time") -> int | None:
    """One optional command-line time → ms UTC (None stays None); errors name the flag."""
    if text is None or str(text).strip() == "":
        return None
    try:
        return parse_time(str(text)).ts_ms
    except ValueError as exc:
        raise ValueError(f"{flag}: {exc}") from None


@dataclass(frozen=True)
class TimeRange:
    """A half-open range ``[start_ms, end_ms)`` of bar open times; None = unbounded."""

    start_ms: int | None = None
    end_ms: int | None = None

    @classmethod
    def from_bounds(cls, start: TimeBound | None, end: TimeBound | None,
                    flags: tuple[str, str] = ("--from", "--to")) -> "TimeRange":
        """Start inclusive, end exclusive (a bare date is its midnight), as in every command."""
        return cls.checked(start.ts_ms if start is not None else None, end.ts_ms if end is not None else None,
                           flags)

    @classmethod
    def checked(cls, start_ms: int | None, end_ms: int | None,
                flags: tuple[str, str] = ("--from", "--to")) -> "TimeRange":
        """The range, or a ValueError naming the two flags when it is empty."""
        if start_ms is not None and end_ms is not None and end_ms <= start_ms:
            raise ValueError(f"{flags[1]} ({ms_to_text(end_ms)}) is before or at {flags[0]} ({ms_to_text(start_ms)})")
        return cls(start_ms, end_ms)

    def contains(self, ts_ms: int) -> bool:
        return (self.start_ms is None or ts_ms >= self.start_ms) and (self.end_ms is None or ts_ms < self.end_ms)


# ---------------------------------------------------------------------- printing


def utc_datetime(ts_ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=int(ts_ms))


def ms_to_text(ts_ms: int | None, *, seconds: bool = False, zone: bool = False) -> str:
    """``2024-03-01 12:00`` (UTC) for tables and messages; ``''`` for None."""
    if ts_ms is None:
        return ""
    text = utc_datetime(ts_ms).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return text + " UTC" if zone else text


def ms_to_date(ts_ms: int | None) -> str:
    """``2024-03-01`` (UTC); ``''`` for None."""
    return "" if ts_ms is None else utc_datetime(ts_ms).strftime("%Y-%m-%d")


def ms_to_iso(ts_ms: int | None) -> str | None:
    """``2024-03-01T12:00:00Z`` (with .mmm when needed) for exports; None stays None."""
    if ts_ms is None:
        return None
    text = utc_datetime(ts_ms).strftime("%Y-%m-%dT%H:%M:%S")
    if ts_ms % 1000:
        text += f".{ts_ms % 1000:03d}"
    return text + "Z"
