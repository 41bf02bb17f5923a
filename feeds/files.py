"""Load OHLCV candles from CSV, CSV.gz, Parquet or Feather, rejecting bad rows with file and line.

Accepted layouts:
- a header with ``timestamp, open, high, low, close, volume`` (case-insensitive;
  ``time``, ``date``, ``datetime``, ``open_time`` also name the time column),
  timestamps as epoch numbers (s, ms, µs or ns, told apart by magnitude) or
  ISO-8601 strings;
- Binance's header-less kline CSV (``open_time, open, high, low, close, volume, ...``),
  whose spot timestamps are in µs since 2025 and in ms before.

Nothing is filled or fixed: any bad row makes the whole load fail (DESIGN.md).

CSV goes through pyarrow's multi-threaded reader with typed columns and vectorised checks;
only a file that fails a check is read again as text to name every bad row (file:line:
reason; blank lines count for line numbers). Each epoch number's unit is told from its own
magnitude; a file that mixes units (e.g. Binance klines switching from ms to µs) is refused
naming its first line in the other unit.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from domain.heap import release_free_heap
from domain.series import BarSeries
from feeds.validation import VALUE_COLUMNS, DataError, order_problems, value_problems

if TYPE_CHECKING:  # pandas is imported only by the row-level path: a clean CSV loads without it (~0.45 s)
    import pandas as pd

TIME_ALIASES = ("timestamp", "time", "date", "datetime", "open_time", "ts", "ts_ms")
MAX_REPORTED = 10


class MixedUnits(Exception):
    """Epoch numbers of one file in different units (row index, reason)."""

    def __init__(self, row: int, reason: str) -> None:
        super().__init__(reason)
        self.row, self.reason = row, reason


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _hashing(path: Path) -> Iterator[Future[str]]:
    """The file's SHA-256, computed on a thread while the caller parses it: hashlib releases the
    GIL on large buffers, so on a 100 MB file its ~0.08 s of CPU overlaps the parse."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") as pool:
        yield pool.submit(file_sha256, path)


def load_bars(path: str | Path, timeframe_ms: int | None = None) -> BarSeries:
    """Read and validate a candle file; raise :class:`DataError` naming every bad row (first 10)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a candle file")
    with _hashing(path) as sha256:
        return _load_bars(path, timeframe_ms, sha256)


def _load_bars(path: Path, timeframe_ms: int | None, sha256: Future[str]) -> BarSeries:
    if _kind(path.name.lower()) == "CSV":
        fast = _load_clean_csv(path, timeframe_ms, sha256)
        if fast is not None:
            return fast
    import pandas as pd

    frame, line_numbers = _read_frame(path)
    ts_col = _find_time_column(frame, path)
    missing = [c for c in VALUE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, frame.columns))}")
    problems: dict[int, str] = {}
    try:
        ts_ms, unit_note = _parse_timestamps(frame[ts_col], problems)
    except MixedUnits as exc:
        label = "row" if _kind(path.name.lower()) != "CSV" else "line"
        raise DataError(f"{path}: {label} {line_numbers[exc.row]}: {exc.reason}") from None
    values = {}
    for name in VALUE_COLUMNS:
        raw = frame[name]
        num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        for i in np.nonzero(np.isnan(num))[0]:
            problems.setdefault(int(i), f"{name} is not a number ({raw.iloc[i]!r})")
        values[name] = num
    value_problems(values, problems)
    order_problems(ts_ms, problems)
    if problems:
        raise DataError(_describe_problems(path, problems, line_numbers))
    if len(ts_ms) == 0:
        raise DataError(f"{path}: no candles in file")
    tf = timeframe_ms or _infer_timeframe(ts_ms, path)
    notes = (unit_note,) if unit_note else ()
    return BarSeries(ts_ms, values["open"], values["high"], values["low"], values["close"], values["volume"],
                     tf, source=str(path), sha256=sha256.result(), notes=notes)


def _read_frame(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Return the table and, per row, its line number in the file (or row number for Parquet/Feather)."""
    import pandas as pd

    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            frame = pd.read_parquet(path)
            frame = frame.reset_index() if not isinstance(frame.index, pd.RangeIndex) else frame
            first_line = 1
        elif name.endswith(".feather"):
            frame, first_line = pd.read_feather(path), 1
        else:
            header = _csv_header(path)
            frame = _read_csv_strings(path, header).to_pandas()
            frame = frame.apply(lambda col: col.str.strip())  # like pandas' skipinitialspace, both ends
            return _with_line_numbers(path, header, frame)
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as {_kind(name)}: {str(exc).strip().splitlines()[0]}") from None
    except Exception as exc:  # pyarrow raises its own error types for corrupt files
        raise DataError(f"{path}: cannot be read as {_kind(name)}: {type(exc).__name__}: {exc}") from None
    line_numbers = np.arange(len(frame)) + first_line
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    _check_duplicate_columns(path, list(frame.columns))
    return frame, line_numbers


# ---- CSV through pyarrow ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _CsvHeader:
    """The first line of a CSV: its column names (as in the file), or None for a header-less kline file."""

    names: list[str]  # names to read the columns under (normalised: stripped, lower case)
    raw: list[str]  # the file's own header cells (empty for header-less files)

    @property
    def has_header(self) -> bool:
        return bool(self.raw)


def _open_text(path: Path) -> TextIO:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def _csv_header(path: Path) -> _CsvHeader:
    """Read the first line: a header with a time column, or (header-less Binance klines) the first row."""
    try:
        with _open_text(path) as fh:
            first = fh.readline(1 << 20)
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot be read as CSV: {str(exc).strip().splitlines()[0]}") from None
    if not first.strip():
        raise DataError(f"{path}: file is empty")
    cells = next(csv.reader([first]))
    normal = [c.strip().lower() for c in cells]
    if not any(c in TIME_ALIASES for c in normal) and _looks_numeric(cells[0]):
        if len(cells) < 6:
            raise DataError(f"{path}: header-less file needs at least 6 columns "
                            f"(open_time, open, high, low, close, volume), found {len(cells)}")
        names = ["timestamp", *VALUE_COLUMNS] + [f"column_{i}" for i in range(6, len(cells))]
        return _CsvHeader(names, [])
    _check_duplicate_columns(path, normal)
    return _CsvHeader(normal, cells)


def _check_duplicate_columns(path: Path, columns: list[str]) -> None:
    if len(columns) != len(set(columns)):
        dupes = [c for c, k in Counter(columns).items() if k > 1]
        raise DataError(f"{path}: duplicate column(s) {', '.join(dupes)}")


def _csv_options(header: _CsvHeader, types: dict[str, pa.DataType]) -> tuple[pacsv.ReadOptions, pacsv.ConvertOptions]:
    read = pacsv.ReadOptions(column_names=header.names, skip_rows=1 if header.has_header else 0,
                             block_size=1 << 21)
    wanted = [c for c in header.names if c in types]
    convert = pacsv.ConvertOptions(column_types={c: types[c] for c in wanted}, include_columns=wanted,
                                   strings_can_be_null=False, quoted_strings_can_be_null=False)
    return read, convert


def _read_csv_strings(path: Path, header: _CsvHeader) -> pa.Table:
    """Every cell as text (for row-level diagnosis); blank lines are skipped (see _with_line_numbers)."""
    read, convert = _csv_options(header, {c: pa.string() for c in header.names})
    return pacsv.read_csv(path, read_options=read, convert_options=convert)


def _with_line_numbers(path: Path, header: _CsvHeader, frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows and their file line numbers: blank lines are not rows, but they count for line numbers."""
    with (gzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb")) as fh:
        data = np.frombuffer(fh.read(), dtype=np.uint8)
    ends = np.flatnonzero(data == 10)
    if len(data) and data[-1] != 10:
        ends = np.append(ends, len(data))
    starts = np.concatenate(([0], ends[:-1] + 1))
    length = ends - starts
    lone_cr = (length == 1) & (data[np.minimum(starts, max(len(data) - 1, 0))] == 13) if len(data) else length
    nonblank = np.flatnonzero((length > 0) & ~lone_cr) + 1  # 1-based line numbers
    if header.has_header:
        nonblank = nonblank[1:]
    frame.columns = header.names[:len(frame.columns)]
    return frame, nonblank[:len(frame)]


def _load_clean_csv(path: Path, timeframe_ms: int | None, sha256: Future[str]) -> BarSeries | None:
    """Fast path: typed, multi-threaded parse and vectorised checks. None when anything at all is off
    (a cell that is not a number, a failed check, ISO times...): the row-level path then names it."""
    header = _csv_header(path)
    if any(c not in header.names for c in VALUE_COLUMNS) or not any(a in header.names for a in TIME_ALIASES):
        return None
    ts_col = next(a for a in TIME_ALIASES if a in header.names)
    types = {c: pa.float64() for c in VALUE_COLUMNS}
    types[ts_col] = pa.int64()
    read, convert = _csv_options(header, types)
    wanted = [ts_col, *VALUE_COLUMNS]
    parts: dict[str, list[np.ndarray]] = {c: [] for c in wanted}
    try:  # parsed on all cores; the table is dropped once its columns are copied out
        table = pacsv.read_csv(path, read_options=read, convert_options=convert,
                               memory_pool=pa.system_memory_pool())
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError, OSError, EOFError):
        return None
    for c in wanted:
        for column in table.column(c).chunks:
            if column.null_count:
                return None
            parts[c].append(_values(column, types[c]))
    del table
    if not parts[ts_col] or sum(len(p) for p in parts[ts_col]) == 0:
        return None
    raw_ts = np.concatenate(parts.pop(ts_col)).astype(np.int64, copy=False)
    values = {c: np.concatenate(parts.pop(c)).astype(np.float64, copy=False) for c in VALUE_COLUMNS}
    if value_problems(values):  # the row-level path names them
        return None
    units = _units(raw_ts)
    if len(np.unique(units)) != 1:
        return None
    unit = UNITS[int(units[0])]
    ts_ms = _to_ms(raw_ts, unit)
    if ts_ms is None or order_problems(ts_ms):
        return None
    tf = timeframe_ms or _infer_timeframe(ts_ms, path)
    notes = () if unit == "ms" else (f"timestamps read as epoch {unit} and converted to ms",)
    series = BarSeries(ts_ms, *(values[k] for k in VALUE_COLUMNS), tf, source=str(path), sha256=sha256.result(),
                       notes=notes)
    _release_free_heap()
    return series


def _values(column: pa.Array, kind: pa.DataType) -> np.ndarray:
    """A null-free int64/float64 Arrow column's values, viewed (copied later, by concatenation).
    Not ``to_numpy()``: that imports pandas, ~0.45 s of a run's start-up."""
    dtype = np.int64 if kind == pa.int64() else np.float64
    return np.frombuffer(column.buffers()[1], dtype=dtype, count=len(column), offset=column.offset * 8)


def _release_free_heap() -> None:
    """Hand the parse buffers' freed heap back to the OS (glibc keeps it otherwise, and the
    engine's small objects live in separate arenas that cannot reuse it): ~150 MB less peak
    RSS on a 1M-bar file. The CSV reader also takes some buffers from Arrow's default pool
    (mimalloc), which keeps freed pages until told: another ~70 MB on 1M bars."""
    pa.default_memory_pool().release_unused()
    release_free_heap()


# epoch units told apart by magnitude, per value: s < 1e11 <= ms < 1e14 <= µs < 1e17 <= ns
UNITS = ("s", "ms", "µs", "ns")
UNIT_LIMITS = np.array([1e11, 1e14, 1e17])
MS_PER_UNIT = {"s": 1000.0, "ms": 1.0, "µs": 1e-3, "ns": 1e-6}


def _units(values: np.ndarray) -> np.ndarray:
    """Index into UNITS of each epoch number's unit."""
    return np.searchsorted(UNIT_LIMITS, np.abs(values.astype(np.float64)), side="right")


def _to_ms(raw: np.ndarray, unit: str) -> np.ndarray | None:
    """Whole-ms int64 times, or None when a value is not a whole millisecond."""
    if unit == "ms":
        return raw.astype(np.int64)
    if unit == "s":
        return raw.astype(np.int64) * 1000
    per_ms = 1000 if unit == "µs" else 1_000_000
    if (raw % per_ms).any():
        return None
    return raw // per_ms


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
    import pandas as pd

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
        good = ~bad & is_num
        units = _units(np.where(good, vals, 0.0))
        first = np.flatnonzero(good)
        unit = UNITS[int(units[first[0]])] if len(first) else "ms"
        other = np.flatnonzero(good & (units != units[first[0]])) if len(first) else np.empty(0, dtype=int)
        if len(other):
            i = int(other[0])
            raise MixedUnits(i, f"timestamp {raw.iloc[i]} is in epoch {UNITS[int(units[i])]} but the file starts "
                                f"in epoch {unit}: mixed timestamp units in one file (convert it to one unit)")
        ms = np.where(good, vals, 0) * MS_PER_UNIT[unit]
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
    import pandas as pd

    filled = dt.fillna(pd.Timestamp(0, tz="UTC"))
    return (filled.dt.tz_convert("UTC").astype("datetime64[ms, UTC]").astype("int64")).to_numpy(dtype=np.int64)


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
