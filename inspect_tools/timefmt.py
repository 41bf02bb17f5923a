"""The inspector's ``--from``/``--to`` argparse type; the rules live in domain/times.py (one for every command).

``--from`` is inclusive and ``--to`` exclusive, as ``--start``/``--end`` elsewhere: a bare date
is its midnight UTC, so ``--from 2024-01-01 --to 2024-02-01`` is exactly January. Epoch numbers
are read by magnitude (s, ms, µs or ns).
"""
from __future__ import annotations

import argparse

from domain.times import TimeBound, parse_time


def time_arg(text: str) -> TimeBound:
    """argparse ``type=`` wrapper: bad values become a usage error, not a traceback."""
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


time_arg.numeric = True  # type: ignore[attr-defined]  # epoch ms accepted: covered by the every-numeric-flag test
