"""The per-bar column codec: exact round trips (every float bit pattern, int64 extremes), chunks written
by the previous version (zlib) still read back exactly, and an unknown encoding is refused."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from store.series_codec import FLOAT_ENCODING, INT_ENCODING, decode, encode

AWKWARD = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 5e-324, -1.7976931348623157e308, 1 / 3])


def _bits(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values).tobytes()


@pytest.mark.parametrize("values", [AWKWARD, np.random.default_rng(0).normal(size=70_001),
                                    np.array([-(2 ** 63), 2 ** 63 - 1, 0, -1], dtype=np.int64),
                                    np.arange(10_000, dtype=np.int64) * 3_600_000 + 1_500_000_000_000,
                                    np.zeros(0)])
def test_round_trip_is_bit_exact(values: np.ndarray) -> None:
    encoding, blob = encode(values)
    assert encoding == (FLOAT_ENCODING if values.dtype.kind == "f" else INT_ENCODING)
    assert _bits(decode(encoding, blob, len(values))) == _bits(values)


def test_chunks_written_with_zlib_still_decode() -> None:
    """As the previous version wrote them: shuffled little-endian bytes, zlib level 1 (ints as deltas)."""
    floats = np.random.default_rng(1).normal(size=999)
    shuffled = np.ascontiguousarray(floats.astype("<f8").view(np.uint8).reshape(-1, 8).T).tobytes()
    assert _bits(decode("f8:shuffle+zlib", zlib.compress(shuffled, 1), 999)) == _bits(floats)
    ints = np.arange(999, dtype=np.int64) * 60_000 + 7
    deltas = np.diff(ints, prepend=np.int64(0)).astype("<i8")
    blob = zlib.compress(np.ascontiguousarray(deltas.view(np.uint8).reshape(-1, 8).T).tobytes(), 1)
    assert np.array_equal(decode("i8:delta+shuffle+zlib", blob, 999), ints)


def test_unknown_encoding_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown series encoding"):
        decode("f8:shuffle+brotli", b"", 0)
