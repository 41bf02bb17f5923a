"""Exports of a run's per-bar equity series straight from its columns: a 1M-bar run in seconds.

Same bytes as the row-by-row writers in ``export.py`` (repr floats, ISO-8601 UTC times, JSON
with indent 2), built column-wise; plus Parquet (exact float64 / int64 columns).
"""
from __future__ import annotations

import math
from typing import BinaryIO, TextIO

import numpy as np

from inspect_tools.views import EQUITY_FIELDS


def iso_times(ts_ms: np.ndarray) -> list[str]:
    """``domain.times.ms_to_iso`` for many times: '2024-03-01T12:00:00Z' ('.123' only when not whole seconds).

    Bar times share few dates and few times of day: each distinct date and time of day is
    formatted once, and each text is two joined pieces (~5x faster than formatting every time).
    """
    if not len(ts_ms):
        return []
    days, ms_of_day = np.divmod(ts_ms, 86_400_000)
    day_keys, day_index = np.unique(days, return_inverse=True)
    day_texts = np.datetime_as_string(day_keys.astype("datetime64[D]")).tolist()
    seconds = ms_of_day // 1000
    second_keys, second_index = np.unique(seconds, return_inverse=True)
    clock_texts = [f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z" for s in second_keys.tolist()]
    out = [day_texts[d] + clock_texts[c] for d, c in zip(day_index.tolist(), second_index.tolist())]
    frac = np.flatnonzero(ts_ms % 1000)
    if len(frac):
        with_ms = np.datetime_as_string(ts_ms[frac].astype("datetime64[ms]"), unit="ms")
        for i, text in zip(frac.tolist(), with_ms.tolist()):
            out[i] = text + "Z"
    return out


def _floats(values: np.ndarray, json_null: bool = False) -> list[str]:
    """``repr`` of each value (JSON: null for non-finite ones).

    Cash and position change only at fills, and equity only while a position is open: most
    of their values repeat the one before. ``repr`` (the export's cost) runs once per run of
    identical bits, and the texts are repeated (exact: same bits, same text).
    """
    if not len(values):
        return []
    bits = values.view(np.int64)
    starts = np.flatnonzero(np.concatenate(([True], bits[1:] != bits[:-1])))
    if 2 * len(starts) > len(values):  # mostly changing values: repeating would cost more than it saves
        texts = list(map(repr, values.tolist()))
    else:
        firsts = np.array(list(map(repr, values[starts].tolist())), dtype=object)
        texts = np.repeat(firsts, np.diff(np.append(starts, len(values)))).tolist()
    if json_null and not np.isfinite(values).all():
        texts = ["null" if not math.isfinite(v) else t for v, t in zip(values.tolist(), texts)]
    return texts


def _columns(values: dict[str, np.ndarray], json_null: bool) -> list[list[str]]:
    cols = []
    for field in EQUITY_FIELDS:
        if field == "time":
            cols.append(iso_times(values["ts"]))
        elif field == "ts":
            cols.append(list(map(str, values["ts"].tolist())))
        else:
            cols.append(_floats(values[field], json_null))
    return cols


def write_equity_csv(stream: TextIO, values: dict[str, np.ndarray]) -> None:
    stream.write(",".join(EQUITY_FIELDS) + "\n")
    if len(values["ts"]):
        stream.write("\n".join(map(",".join, zip(*_columns(values, json_null=False)))) + "\n")


def write_equity_json(stream: TextIO, values: dict[str, np.ndarray]) -> None:
    if not len(values["ts"]):
        stream.write("[]\n")
        return
    keys = [f'    "{f}": ' for f in EQUITY_FIELDS]
    cols = _columns(values, json_null=True)
    cols[1] = [f'"{t}"' for t in cols[1]]
    template = "  {\n" + ",\n".join(k + "%s" for k in keys) + "\n  }"
    stream.write("[\n" + ",\n".join(template % row for row in zip(*cols)) + "\n]\n")


def write_equity_parquet(stream: BinaryIO, values: dict[str, np.ndarray]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"ts": values["ts"],
                      "time": pa.array(values["ts"], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
                      **{f: values[f] for f in EQUITY_FIELDS if f not in ("ts", "time")}})
    pq.write_table(table, stream)
