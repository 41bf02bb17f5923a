"""CSV and JSON output of listings: every row, every stored digit (never truncated).

Floats are written with ``repr`` (the shortest text that reads back to the same
double), so an export round-trips exactly; None is an empty CSV cell / JSON null;
non-finite floats become JSON null (strict JSON has no NaN).
"""
from __future__ import annotations

import csv
import json
from typing import Any, Iterable, Sequence, TextIO

from domain.strict_json import jsonable
from domain.times import ms_to_iso

FORMATS = ("table", "csv", "json")


def with_iso_times(rows: Iterable[dict[str, Any]], times: dict[str, str]) -> list[dict[str, Any]]:
    """Add an ISO-8601 UTC copy of each ms field: {'entry_ts': 'entry_time'}."""
    return [{**row, **{iso: ms_to_iso(row.get(ms)) for ms, iso in times.items()}} for row in rows]


def write_csv(stream: TextIO, fields: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(fields)
    for row in rows:
        writer.writerow([_csv_cell(row.get(f)) for f in fields])


def write_json(stream: TextIO, value: Any) -> None:
    json.dump(json_safe(value), stream, indent=2, ensure_ascii=False, allow_nan=False)
    stream.write("\n")


def write_rows(stream: TextIO, fmt: str, fields: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    """``fmt`` is 'csv' or 'json' (a list of objects with ``fields`` as keys, in order)."""
    if fmt == "csv":
        write_csv(stream, fields, rows)
    elif fmt == "json":
        write_json(stream, [{f: row.get(f) for f in fields} for row in rows])
    else:
        raise ValueError(f"not an export format: {fmt!r}")


json_safe = jsonable  # one strict-JSON conversion for every --json/--format json output


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(json_safe(value), separators=(",", ":"), sort_keys=True)
    return str(value)
