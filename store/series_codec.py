"""Exact, compact binary encoding of one per-bar column (numpy array) for a BLOB cell.

Why not one row per bar: a 1M-bar run is 2M rows (~230 MB, ~30 s to insert). A column
chunk is a few MB and one INSERT. Floats round-trip bit for bit (no text, no rounding).

Encodings (little-endian, portable across SQLite and PostgreSQL ``bytea``):
- ``f8:shuffle+zstd``: float64 bytes transposed so byte k of every value is contiguous
  (sign/exponent bytes repeat, so the compressor squeezes them), then zstd level 1;
- ``i8:delta+shuffle+zstd``: int64 differences from the previous value (the first value
  from 0), shuffled and compressed: bar times 3,600,000 ms apart cost almost nothing.
- ``…+zlib``: the same with zlib level 1, as written before zstd (still read). zstd (pyarrow's
  codec) compresses these columns as small as zlib did, about 25× faster.
Missing values (``None``) travel in a separate packed bit mask (zlib); their slots hold 0.
"""
from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa

FLOAT_ENCODING = "f8:shuffle+zstd"
INT_ENCODING = "i8:delta+shuffle+zstd"
ZLIB_LEVEL = 1  # masks, and the chunks written before zstd
_ZSTD = pa.Codec("zstd", compression_level=1)


def _shuffle(raw: np.ndarray) -> bytes:
    return np.ascontiguousarray(raw.view(np.uint8).reshape(-1, 8).T).tobytes()


def _unshuffle(blob: bytes, n: int) -> np.ndarray:
    """Inverse of :func:`_shuffle`, one byte plane at a time: ~3x faster than copying the transpose."""
    planes = np.frombuffer(blob, dtype=np.uint8).reshape(8, n)
    out = np.empty((n, 8), dtype=np.uint8)
    for k in range(8):
        out[:, k] = planes[k]
    return out.reshape(-1)


def encode(values: np.ndarray) -> tuple[str, bytes]:
    """(encoding, blob) for a float64 or int64 column."""
    if values.dtype.kind == "f":
        le = np.ascontiguousarray(values, dtype="<f8")
        return FLOAT_ENCODING, _ZSTD.compress(_shuffle(le), asbytes=True)
    if values.dtype.kind in "iu":
        ints = np.ascontiguousarray(values, dtype="<i8")
        deltas = np.diff(ints, prepend=np.int64(0)) if len(ints) else ints
        return INT_ENCODING, _ZSTD.compress(_shuffle(deltas.astype("<i8")), asbytes=True)
    raise TypeError(f"cannot encode a {values.dtype} column")


def decode(encoding: str, blob: bytes, n: int) -> np.ndarray:
    """The exact array :func:`encode` was given (native byte order)."""
    layout, _, codec = encoding.rpartition("+")
    if codec == "zstd":
        raw = _unshuffle(_ZSTD.decompress(blob, decompressed_size=8 * n, asbytes=True), n)
    elif codec == "zlib":
        raw = _unshuffle(zlib.decompress(blob), n)
    else:
        raise ValueError(f"unknown series encoding {encoding!r}")
    if layout == "f8:shuffle":
        return raw.view("<f8").astype(np.float64, copy=False)
    if layout == "i8:delta+shuffle":
        return np.cumsum(raw.view("<i8"), dtype=np.int64)
    raise ValueError(f"unknown series encoding {encoding!r}")


def encode_mask(missing: np.ndarray | None) -> bytes | None:
    """Packed bit mask of missing values, or None when nothing is missing."""
    if missing is None or not missing.any():
        return None
    return zlib.compress(np.packbits(missing.astype(bool)).tobytes(), ZLIB_LEVEL)


def decode_mask(blob: bytes | None, n: int) -> np.ndarray | None:
    if blob is None:
        return None
    return np.unpackbits(np.frombuffer(zlib.decompress(blob), dtype=np.uint8), count=n).astype(bool)
