"""A run's per-bar series as ``series_chunks`` rows: exact compressed column chunks, built without a database.

Why apart from store/series.py (which writes and reads them): a sweep worker encodes a
finished run's chunks and ships the rows; it imports this module, never SQLAlchemy.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from store.series_codec import encode, encode_mask

CHUNK_ROWS = 262_144

# group -> columns with dtype: ts first, always int64 and never missing.
SERIES_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "equity": (("ts", "i8"), ("cash", "f8"), ("position", "f8"), ("close", "f8"), ("equity", "f8")),
    "signals": (("ts", "i8"), ("signal", "f8"), ("threshold", "f8"), ("unusualness", "f8"), ("model_version", "i8")),
}


def column_from_python(values: Any, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A list/tuple of numbers and None -> (array, missing mask or None)."""
    n = len(values)
    nones = values.count(None) if hasattr(values, "count") else 0
    if nones == 0:
        return np.asarray(values, dtype=np.float64 if dtype == "f8" else np.int64), None
    if nones == n:
        return np.zeros(n, dtype=np.float64 if dtype == "f8" else np.int64), np.ones(n, dtype=bool)
    missing = np.fromiter((v is None for v in values), dtype=bool, count=n)
    as_float = np.array(values, dtype=np.float64)  # None -> nan, filled below
    as_float[missing] = 0.0
    return (as_float if dtype == "f8" else as_float.astype(np.int64)), missing


def chunk_rows(run_id: str, group: str, columns: dict[str, tuple[np.ndarray, np.ndarray | None]],
               first_chunk_no: int = 0) -> list[dict[str, Any]]:
    """series_chunks rows for ``columns`` (all of one group, equal length), ``CHUNK_ROWS`` per chunk."""
    spec = SERIES_COLUMNS[group]
    ts = columns["ts"][0]
    if len(ts) > 1 and not bool(np.all(np.diff(ts) > 0)):
        raise ValueError(f"run {run_id}: {group} times are not strictly increasing")
    out = []
    for k, start in enumerate(range(0, len(ts), CHUNK_ROWS)):
        stop = min(start + CHUNK_ROWS, len(ts))
        for name, dtype in spec:
            values, missing = columns[name]
            encoding, blob = encode(values[start:stop])
            out.append({"run_id": run_id, "series": f"{group}.{name}", "chunk_no": first_chunk_no + k,
                        "first_ts": int(ts[start]), "last_ts": int(ts[stop - 1]), "n": stop - start,
                        "dtype": dtype, "encoding": encoding, "data": blob,
                        "nulls": encode_mask(None if missing is None else missing[start:stop])})
    return out
