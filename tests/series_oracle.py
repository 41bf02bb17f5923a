"""An independent reader of the stored per-bar series, written from the format's documentation
(store/series_codec.py docstring) with plain sqlite3/DB-API rows, zlib, pyarrow's zstd and numpy: no store code.

Tests use it as the oracle for what the repository wrote: chunks of a column by number, then the
live-tail rows (tables equity / signals) by ts.
"""
from __future__ import annotations

import zlib
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa

COLUMNS = {"equity": ("ts", "cash", "position", "close", "equity"),
           "signals": ("ts", "signal", "threshold", "unusualness", "model_version")}


def _decode(encoding: str, blob: bytes, n: int) -> np.ndarray:
    layout, codec = encoding.rsplit("+", 1)
    data = (zlib.decompress(bytes(blob)) if codec == "zlib"
            else pa.decompress(bytes(blob), decompressed_size=8 * n, codec=codec, asbytes=True))
    raw = np.frombuffer(data, dtype=np.uint8).reshape(8, n).T.copy().reshape(-1)
    if layout == "f8:shuffle":
        return raw.view("<f8")
    assert layout == "i8:delta+shuffle", encoding
    return np.cumsum(raw.view("<i8"))


def series_rows(query: Callable[[str, Sequence[Any]], list[tuple]], run_id: str, group: str,
                placeholder: str = "?") -> list[tuple]:
    """Rows (ts, ...) of a run's group; ``query(sql, params)`` runs SQL on any DB-API connection."""
    names = COLUMNS[group]
    p = placeholder
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for name in names:
        for encoding, blob, nulls, n in query(f"SELECT encoding, data, nulls, n FROM series_chunks WHERE run_id = {p} "
                                              f"AND series = {p} ORDER BY chunk_no", (run_id, f"{group}.{name}")):
            values = _decode(encoding, blob, n).tolist()
            if nulls is not None:
                mask = np.unpackbits(np.frombuffer(zlib.decompress(bytes(nulls)), dtype=np.uint8), count=n)
                values = [None if m else v for v, m in zip(values, mask.tolist())]
            columns[name].extend(values)
    chunked = list(zip(*(columns[n] for n in names)))
    tail = query(f"SELECT {', '.join(names)} FROM {group} WHERE run_id = {p} ORDER BY ts", (run_id,))
    return chunked + [tuple(r) for r in tail]
