"""Parse user-given times: ISO-8601 (UTC unless stated) or epoch milliseconds."""
from __future__ import annotations

import pandas as pd


def parse_time_ms(text: str | None, flag: str = "time") -> int | None:
    """'2022-01-01', '2022-01-01T12:00', '2022-01-01T12:00+02:00' or '1640995200000' → epoch ms UTC."""
    if text is None or text == "":
        return None
    text = text.strip()
    if text.lstrip("-").isdigit():
        value = int(text)
        return value * 1000 if abs(value) < 100_000_000_000 else value  # seconds given by mistake
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise ValueError(f"{flag}: cannot parse {text!r}; use ISO-8601 (e.g. 2022-01-01 or "
                         "2022-01-01T12:00Z) or epoch milliseconds") from None
    if ts is pd.NaT:
        raise ValueError(f"{flag}: cannot parse {text!r}")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)
