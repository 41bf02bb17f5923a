"""Parse user-given times: the one rule lives in domain/times.py (half-open ranges, epoch unit by
magnitude); this name stays for its callers."""
from __future__ import annotations

from domain.times import parse_time_ms

__all__ = ["parse_time_ms"]
