"""Time stamps: int ms UTC (bar open times) in and out, dates or ms on the command line.

``--from`` / ``--to`` accept ms since the epoch (all digits), a date
(``2024-03-01``) or a date and time (``2024-03-01T12:00``, ``2024-03-01 12:00:00Z``,
``+02:00`` offsets). Naive values are UTC. A date alone given to ``--to``
means the whole of that day.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

MS_PER_DAY = 86_400_000


@dataclass(frozen=True)
class TimeBound:
    """A parsed command-line time: its instant and whether it was a bare date."""

    ts_ms: int
    date_only: bool


@dataclass(frozen=True)
class TimeRange:
    """A half-open range [start_ms, end_ms) of bar open times; None = unbounded."""

    start_ms: int | None = None
    end_ms: int | None = None

    @classmethod
    def from_bounds(cls, start: TimeBound | None, end: TimeBound | None) -> "TimeRange":
        """--from is inclusive; --to is inclusive too (a bare date: its whole day)."""
        start_ms = start.ts_ms if start is not None else None
        end_ms = None
        if end is not None:
            end_ms = end.ts_ms + (MS_PER_DAY if end.date_only else 1)
        if start_ms is not None and end_ms is not None and end_ms <= start_ms:
            raise ValueError(f"--to ({ms_to_text(end_ms - 1)}) is before --from ({ms_to_text(start_ms)})")
        return cls(start_ms, end_ms)

    def contains(self, ts_ms: int) -> bool:
        return (self.start_ms is None or ts_ms >= self.start_ms) and (self.end_ms is None or ts_ms < self.end_ms)


def parse_time(text: str) -> TimeBound:
    """Parse one --from/--to value; raises ValueError with a readable message."""
    raw = text.strip()
    if raw.isdigit():
        return TimeBound(int(raw), date_only=False)
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a date, date-time or ms timestamp: {text!r} "
                         "(e.g. 2024-03-01, 2024-03-01T12:00, 1709251200000)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    date_only = len(raw) == 10  # YYYY-MM-DD
    return TimeBound(int(value.timestamp() * 1000), date_only=date_only)


def time_arg(text: str) -> TimeBound:
    """argparse ``type=`` wrapper: bad values become a usage error, not a traceback."""
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def ms_to_text(ts_ms: int | None, *, seconds: bool = False) -> str:
    """'2024-03-01 12:00' (UTC) for tables; '' for None."""
    if ts_ms is None:
        return ""
    fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return _utc(ts_ms).strftime(fmt)


def ms_to_date(ts_ms: int | None) -> str:
    return "" if ts_ms is None else _utc(ts_ms).strftime("%Y-%m-%d")


def ms_to_iso(ts_ms: int | None) -> str | None:
    """'2024-03-01T12:00:00Z' for exports (None stays None)."""
    if ts_ms is None:
        return None
    dt = _utc(ts_ms)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if ts_ms % 1000:
        text += f".{ts_ms % 1000:03d}"
    return text + "Z"


def _utc(ts_ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=int(ts_ms))
