"""Per-bar records of a run kept columnar, so a 1M-bar run holds no million Python objects.

:class:`Column`: a typed array (8 bytes per value) that still compares equal to a list.
:class:`SignalLog`: the per-bar signal record.

Appending stays cheap: one ``list.append`` per field (C calls, no object per bar); every
``COMPACT_EVERY`` points the lists are moved into typed arrays (int64 times, float64 values, with a
missing-value flag for the optional fields). Reading gives :class:`SignalPoint` objects
back exactly (``None`` stays ``None``, floats bit for bit); ``columns()`` hands the store
the arrays without building per-bar objects.
"""
from __future__ import annotations

from array import array
from itertools import repeat
from typing import Any, Callable, Iterator, Sequence, overload

import numpy as np

from domain.types import SignalPoint

COMPACT_EVERY = 65_536
_BULK_POINTS = 4_096  # from this many points on, SignalLog.extend writes the typed arrays directly


class Column(array):
    """``array('d')`` / ``array('q')`` for a per-bar column; ``==`` a list compares the values."""

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple)):
            return len(self) == len(other) and self.tolist() == list(other)
        return array.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __getitem__(self, index: Any) -> Any:  # a slice stays a Column, so it still compares with lists
        got = array.__getitem__(self, index)
        return Column(self.typecode, got) if isinstance(index, slice) else got

    __hash__ = None  # type: ignore[assignment]


class SignalLog(Sequence[SignalPoint]):
    """An append-only sequence of SignalPoint (ts_ms, signal, threshold, unusualness, model_version)."""

    __slots__ = ("_ts", "_signal", "_threshold", "_unusual", "_version", "_missing", "_recent")

    def __init__(self, points: Sequence[SignalPoint] = ()) -> None:
        self._ts = array("q")
        self._signal = array("d")
        self._threshold = array("d")
        self._unusual = array("d")
        self._version = array("q")
        self._missing = bytearray()  # per point: bit 0 threshold, bit 1 unusualness, bit 2 model_version
        # The newest points, one plain list per field: the engine appends each field with
        # list.append itself (C calls, no tuple per bar); compact_if_due() moves them on.
        self._recent: tuple[list, list, list, list, list] = ([], [], [], [], [])
        for p in points:
            self.append(p)
            self.compact_if_due()

    def appenders(self) -> tuple[Callable[[Any], None], ...]:
        """The five field appenders (ts, signal, threshold, unusualness, model_version), for hot loops.

        Call all five once per point; the owner calls :meth:`compact_if_due` now and then.
        """
        return tuple(column.append for column in self._recent)

    def append(self, point: SignalPoint) -> None:
        for column, value in zip(self._recent, point):
            column.append(value)

    def extend(self, ts_ms: Sequence[int] | np.ndarray, signal: Sequence[float] | np.ndarray,
               threshold: float | None = None, unusualness: float | None = None,
               model_version: int | None = None) -> None:
        """Append points in bulk: ``ts_ms`` and ``signal`` per point (numpy or typed arrays, lists),
        the other fields shared by all. Times must increase past the last point recorded.

        A few points join the recent ones (a few list extends); many go straight into the typed
        arrays, without a Python object per point."""
        n = len(ts_ms)
        if len(signal) != n:
            raise ValueError(f"{n} times but {len(signal)} signals")
        if not n:
            return
        last = self._last_ts()
        if last is not None and ts_ms[0] <= last:
            raise ValueError(f"signal times must increase: {ts_ms[0]} after {last}")
        if n >= _BULK_POINTS:
            self._extend_typed(n, ts_ms, signal, threshold, unusualness, model_version)
            return
        ts, values, thresholds, unusual, versions = self._recent
        ts.extend(plain_numbers(ts_ms))
        values.extend(plain_numbers(signal))
        thresholds.extend(repeat(threshold, n))
        unusual.extend(repeat(unusualness, n))
        versions.extend(repeat(model_version, n))

    def _last_ts(self) -> int | None:
        recent = self._recent[0]
        return recent[-1] if recent else (self._ts[-1] if self._ts else None)

    def _extend_typed(self, n: int, ts_ms: Any, signal: Any, threshold: float | None, unusualness: float | None,
                      model_version: int | None) -> None:
        self._compact()  # the recent points go first
        self._ts.frombytes(np.ascontiguousarray(ts_ms, dtype=np.int64).tobytes())
        self._signal.frombytes(np.ascontiguousarray(signal, dtype=np.float64).tobytes())
        mask = 0
        for bit, value, target, zero in ((1, threshold, self._threshold, 0.0), (2, unusualness, self._unusual, 0.0),
                                         (4, model_version, self._version, 0)):
            if value is None:
                mask |= bit
            target.extend(array(target.typecode, [zero if value is None else value]) * n)
        self._missing.extend(bytes([mask]) * n)

    def compact_if_due(self) -> None:
        """Move the recent points into the typed arrays once there are COMPACT_EVERY of them."""
        if len(self._recent[0]) >= COMPACT_EVERY:
            self._compact()

    def _compact(self) -> None:
        ts, signal, threshold, unusual, version = self._recent
        n = len(ts)
        if not n:
            return
        # array(code, list) converts about twice as fast as array.extend(list); then one memcpy
        self._ts.extend(array("q", ts))
        self._signal.extend(array("d", signal))
        mask, uniform = 0, True
        for bit, col, target, zero in ((1, threshold, self._threshold, 0.0), (2, unusual, self._unusual, 0.0),
                                       (4, version, self._version, 0)):
            nones = col.count(None)
            if nones == 0:
                target.extend(array(target.typecode, col))
            elif nones == n:  # never recorded (e.g. no model): zeros, flagged missing
                target.extend(array(target.typecode, [zero]) * n)
                mask |= bit
            else:
                target.extend([zero if v is None else v for v in col])
                uniform = False
        if uniform:
            self._missing.extend(bytes([mask]) * n)
        else:
            self._missing.extend([(a is None) | (b is None) << 1 | (c is None) << 2
                                  for a, b, c in zip(threshold, unusual, version)])
        for column in self._recent:  # the same lists: the appenders stay bound to them
            column.clear()

    def __len__(self) -> int:
        return len(self._ts) + len(self._recent[0])

    def _point(self, i: int) -> SignalPoint:
        flags = self._missing[i]
        return SignalPoint(self._ts[i], self._signal[i], None if flags & 1 else self._threshold[i],
                           None if flags & 2 else self._unusual[i], None if flags & 4 else self._version[i])

    @overload
    def __getitem__(self, index: int) -> SignalPoint: ...
    @overload
    def __getitem__(self, index: slice) -> list[SignalPoint]: ...
    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("signal index out of range")
        done = len(self._ts)
        if index < done:
            return self._point(index)
        return SignalPoint(*(column[index - done] for column in self._recent))

    def __iter__(self) -> Iterator[SignalPoint]:
        for i in range(len(self._ts)):
            yield self._point(i)
        yield from [SignalPoint(*values) for values in zip(*self._recent)]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (SignalLog, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __repr__(self) -> str:
        return f"SignalLog({len(self)} points)"

    def columns(self) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """name -> (values, missing mask or None), in SignalPoint field order; exact values.

        The values are read-only views of the log's own arrays, not copies (40 MB on a 1M-bar
        run): while any of them is alive the log refuses appends (BufferError).
        """
        self._compact()
        missing = np.frombuffer(self._missing, dtype=np.uint8)
        out: dict[str, tuple[np.ndarray, np.ndarray | None]] = {
            "ts": (_view(self._ts, np.int64), None), "signal": (_view(self._signal, np.float64), None)}
        for name, values, bit, dtype in (("threshold", self._threshold, 1, np.float64),
                                         ("unusualness", self._unusual, 2, np.float64),
                                         ("model_version", self._version, 4, np.int64)):
            mask = (missing & bit).astype(bool)
            out[name] = (_view(values, dtype), mask if mask.any() else None)
        return out


def plain_numbers(values: Any) -> Any:
    """Values that iterate as plain Python numbers (a numpy array would give numpy scalars)."""
    return values.tolist() if isinstance(values, np.ndarray) else values


def _view(values: array, dtype: Any) -> np.ndarray:
    view = np.frombuffer(values, dtype=dtype)
    view.flags.writeable = False
    return view
