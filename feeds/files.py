"""Load OHLCV candles from CSV, CSV.gz, Parquet or Feather, rejecting bad rows with file and line.

Accepted layouts:
- a header with ``timestamp, open, high, low, close, volume`` (case-insensitive;
  ``time``, ``date``, ``datetime``, ``open_time`` also name the time column),
  timestamps as epoch numbers (s, ms, µs or ns, told apart by magnitude) or
  ISO-8601 strings;
- Binance's header-less kline CSV (``open_time, open, high, low, close, volume, ...``),
  whose spot timestamps are in µs since 2025 and in ms before.

Nothing is filled or fixed: any bad row makes the whole load fail (DESIGN.md).
"""
from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from feeds.series import BarSeries
from feeds.validation import DataError

PRICE_COLUMNS = ("open", "high", "low", "close")
VALUE_COLUMNS = PRICE_COLUMNS + ("volume",)
TIME_ALIASES = ("timestamp", "time", "date", "datetime", "open_time", "ts", "ts_ms")
MAX_REPORTED = 10


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_bars(path: str | Path, timeframe_ms: int | None = None) -> BarSeries:
    """Read and validate a candle file; raise :class:`DataError` naming every bad row (first 10)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a candle file")
    frame, line_numbers = _read_frame(path)
    ts_col = _find_time_column(frame, path)
    missing = [c for c in VALUE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, frame.columns))}")
    problems: dict[int, str] = {}
    ts_ms, unit_note = _parse_timestamps(frame[ts_col], problems)
    values = {}
    for name in VALUE_COLUMNS:
        raw = frame[name]
        num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        for i in np.nonzero(np.isnan(num))[0]:
            problems.setdefault(int(i), f"{name} is not a number ({raw.iloc[i]!r})")
        values[name] = num
    _check_values(values, problems)
    _check_order(ts_ms, problems)
    if problems:
        raise DataError(_describe_problems(path, problems, line_numbers))
    if len(ts_ms) == 0:
        raise DataError(f"{path}: no candles in file")
    tf = timeframe_ms or _infer_timeframe(ts_ms, path)
    notes = (unit_note,) if unit_note else ()
    return BarSeries(ts_ms, values["open"], values["high"], values["low"], values["close"], values["volume"],
                     tf, source=str(path), sha256=file_sha256(path), notes=notes)


def _read_frame(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Return the table and, per row, its line number in the file (or row number for Parquet/Feather)."""
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            frame = pd.read_parquet(path)
            frame = frame.reset_index() if not isinstance(frame.index, pd.RangeIndex) else frame
            first_line = 1
        elif name.endswith(".feather"):
            frame, first_line = pd.read_feather(path), 1
        else:
            frame, first_line = pd.read_csv(path, dtype=str, skipinitialspace=True, skip_blank_lines=False), 2
            if not _has_time_column(frame) and _looks_numeric(frame.columns[0]):
                frame = pd.read_csv(path, dtype=str, header=None, skipinitialspace=True, skip_blank_lines=False)
                first_line = 1
                if frame.shape[1] < 6:
                    raise DataError(f"{path}: header-less file needs at least 6 columns "
                                    f"(open_time, open, high, low, close, volume), found {frame.shape[1]}")
                frame = frame.rename(columns=dict(enumerate(("timestamp",) + VALUE_COLUMNS)))
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as {_kind(name)}: {str(exc).strip().splitlines()[0]}") from None
    except Exception as exc:  # pyarrow raises its own error types for corrupt files
        raise DataError(f"{path}: cannot be read as {_kind(name)}: {type(exc).__name__}: {exc}") from None
    line_numbers = np.arange(len(frame)) + first_line
    if _kind(name) == "CSV":  # blank lines are not rows, but they count for line numbers
        blank = frame.isna().all(axis=1).to_numpy()
        frame, line_numbers = frame[~blank].reset_index(drop=True), line_numbers[~blank]
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    if len(frame.columns) != len(set(frame.columns)):
        dupes = [c for c, k in Counter(frame.columns).items() if k > 1]
        raise DataError(f"{path}: duplicate column(s) {', '.join(dupes)}")
    return frame, line_numbers


def _kind(name: str) -> str:
    if name.endswith((".parquet", ".pq")):
        return "Parquet"
    if name.endswith(".feather"):
        return "Feather"
    return "CSV"


def _has_time_column(frame: pd.DataFrame) -> bool:
    return any(str(c).strip().lower() in TIME_ALIASES for c in frame.columns)


def _looks_numeric(text: object) -> bool:
    try:
        float(str(text))
        return True
    except ValueError:
        return False


def _find_time_column(frame: pd.DataFrame, path: Path) -> str:
    for alias in TIME_ALIASES:
        if alias in frame.columns:
            return alias
    raise DataError(f"{path}: missing a timestamp column (one of {', '.join(TIME_ALIASES)}); "
                    f"found {', '.join(map(str, frame.columns))}")


def _parse_timestamps(raw: pd.Series, problems: dict[int, str]) -> tuple[np.ndarray, str | None]:
    """Epoch numbers (unit by magnitude) or ISO-8601 strings → int64 ms UTC."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        dt = pd.to_datetime(raw, utc=True)
        for i in np.nonzero(dt.isna().to_numpy())[0]:
            problems.setdefault(int(i), "timestamp is missing")
        return _datetime_to_ms(dt), None
    numeric = pd.to_numeric(raw, errors="coerce")
    is_num = numeric.notna().to_numpy()
    if len(raw) and is_num.sum() * 2 > len(raw):  # mostly epoch numbers: judge each row on its own
        for i in np.nonzero(~is_num)[0]:
            problems.setdefault(int(i), f"timestamp {raw.iloc[i]!r} is not an epoch number")
        vals = numeric.to_numpy(dtype=float)
        bad = ~np.isfinite(vals) & is_num
        for i in np.nonzero(bad)[0]:
            problems.setdefault(int(i), f"timestamp is not finite ({raw.iloc[i]!r})")
        biggest = float(np.nanmax(np.abs(np.where(bad | ~is_num, 0, vals)))) if len(vals) else 0.0
        scale, unit = (1000.0, "s") if biggest < 1e11 else (1.0, "ms") if biggest < 1e14 else \
            (1e-3, "µs") if biggest < 1e17 else (1e-6, "ns")
        ms = np.where(bad | ~is_num, 0, vals) * scale
        frac = np.abs(ms - np.round(ms)) > 1e-6
        for i in np.nonzero(frac & ~bad & is_num)[0]:
            problems.setdefault(int(i), f"timestamp {raw.iloc[i]} is not a whole millisecond")
        note = None if unit == "ms" else f"timestamps read as epoch {unit} and converted to ms"
        return np.round(ms).astype(np.int64), note
    dt = pd.to_datetime(raw, utc=True, errors="coerce", format="ISO8601")
    for i in np.nonzero(dt.isna().to_numpy())[0]:
        problems.setdefault(int(i), f"timestamp {raw.iloc[i]!r} is neither epoch milliseconds nor ISO-8601")
    return _datetime_to_ms(dt), None


def _datetime_to_ms(dt: pd.Series) -> np.ndarray:
    filled = dt.fillna(pd.Timestamp(0, tz="UTC"))
    return (filled.dt.tz_convert("UTC").astype("datetime64[ms, UTC]").astype("int64")).to_numpy(dtype=np.int64)


def _check_values(values: dict[str, np.ndarray], problems: dict[int, str]) -> None:
    o, h, l, c, v = (values[k] for k in VALUE_COLUMNS)
    finite = {k: np.isfinite(a) for k, a in values.items()}
    for name in VALUE_COLUMNS:
        for i in np.nonzero(~finite[name])[0]:
            problems.setdefault(int(i), f"{name} is missing or not finite ({values[name][i]})")
    with np.errstate(invalid="ignore"):
        for name in PRICE_COLUMNS:
            for i in np.nonzero(values[name] <= 0)[0]:
                problems.setdefault(int(i), f"{name} is not positive ({values[name][i]})")
        for i in np.nonzero(h < np.maximum(o, c))[0]:
            problems.setdefault(int(i), f"high {h[i]} < max(open, close) {max(o[i], c[i])}")
        for i in np.nonzero(l > np.minimum(o, c))[0]:
            problems.setdefault(int(i), f"low {l[i]} > min(open, close) {min(o[i], c[i])}")
        for i in np.nonzero(v < 0)[0]:
            problems.setdefault(int(i), f"volume is negative ({v[i]})")


def _check_order(ts_ms: np.ndarray, problems: dict[int, str]) -> None:
    if len(ts_ms) < 2:
        return
    step = np.diff(ts_ms)
    for i in np.nonzero(step == 0)[0]:
        problems.setdefault(int(i) + 1, f"duplicate timestamp {_fmt(ts_ms[i + 1])}")
    for i in np.nonzero(step < 0)[0]:
        problems.setdefault(int(i) + 1, f"timestamp {_fmt(ts_ms[i + 1])} is earlier than the row before "
                                        f"({_fmt(ts_ms[i])}): rows must be sorted ascending")


def _fmt(ms: int) -> str:
    return f"{int(ms)} ({pd.Timestamp(int(ms), unit='ms', tz='UTC').strftime('%Y-%m-%d %H:%M:%S')} UTC)"


def _describe_problems(path: Path, problems: dict[int, str], line_numbers: np.ndarray) -> str:
    rows = sorted(problems)
    label = "row" if _kind(path.name.lower()) != "CSV" else "line"
    lines = [f"{path}: {len(rows)} bad row(s)" + (f", first {MAX_REPORTED}:" if len(rows) > MAX_REPORTED else ":")]
    lines += [f"  {label} {line_numbers[i]}: {problems[i]}" for i in rows[:MAX_REPORTED]]
    return "\n".join(lines)


def _infer_timeframe(ts_ms: np.ndarray, path: Path) -> int:
    """The most common spacing of consecutive bars (gaps make larger spacings, rarely the mode)."""
    if len(ts_ms) < 2:
        raise DataError(f"{path}: need at least 2 candles to infer the timeframe")
    steps, counts = np.unique(np.diff(ts_ms), return_counts=True)
    return int(steps[np.argmax(counts)])
