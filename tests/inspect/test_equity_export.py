"""The documented equity export (``equity RUN --format csv|json|parquet``): column-wise writers give
the same bytes as the row-by-row writers, and Parquet holds the exact stored values."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from inspect_tools.export import with_iso_times, write_rows
from inspect_tools.queries import open_reader
from inspect_tools.series_export import _floats, iso_times, write_equity_csv, write_equity_json
from domain.times import ms_to_iso
from inspect_tools.views import EQUITY_FIELDS, EQUITY_TIMES


def test_columnwise_writers_equal_the_row_writers(runs_db) -> None:
    with open_reader(str(runs_db.path)) as reader:
        run = reader.resolve("zscore-synthetic")
        rows = reader.equity(run["id"], initial_cash=run["initial_cash"])
        values = reader.equity_values(run["id"], initial_cash=run["initial_cash"])
    for fmt, fast in (("csv", write_equity_csv), ("json", write_equity_json)):
        slow_out, fast_out = io.StringIO(), io.StringIO()
        write_rows(slow_out, fmt, EQUITY_FIELDS, with_iso_times(rows, EQUITY_TIMES))
        fast(fast_out, values)
        assert fast_out.getvalue() == slow_out.getvalue() and len(rows) == 3_000


def test_iso_times_with_milliseconds() -> None:
    ts = np.array([0, 1_704_067_200_000, 1_704_067_200_123, 1_704_067_259_999], dtype=np.int64)
    assert iso_times(ts) == [ms_to_iso(int(t)) for t in ts]


def test_iso_times_of_random_times_before_and_after_1970() -> None:
    rng = np.random.default_rng(1)
    ts = np.sort(np.concatenate([rng.integers(-5_000_000_000_000, 253_402_300_799_000, 20_000),
                                 [0, -1, -1000, -86_400_000, 1_704_067_200_123, 253_402_300_799_999]]))
    assert iso_times(ts) == [ms_to_iso(int(t)) for t in ts]


def test_float_texts_of_repeating_values_are_each_values_repr() -> None:
    values = np.array([1.5] * 5 + [-0.0, 0.0, 0.0, float("nan"), float("nan"), float("inf"), 0.1 + 0.2] * 3 + [7.0])
    assert _floats(values) == [repr(v) for v in values.tolist()]
    assert _floats(values, json_null=True) == ["null" if v != v or v in (float("inf"), -float("inf")) else repr(v)
                                                for v in values.tolist()]
    changing = np.linspace(0.0, 1.0, 11)
    assert _floats(changing) == [repr(v) for v in changing.tolist()] and _floats(changing[:0]) == []


def test_parquet_export_holds_the_exact_series(runs_db, cli, tmp_path: Path) -> None:
    out = tmp_path / "equity.parquet"
    result = cli("--db", runs_db.path, "equity", "zscore-synthetic", "--format", "parquet", "-o", out)
    assert result.status == 0 and "wrote" in result.out
    table = pq.read_table(out)
    assert table.column_names == list(EQUITY_FIELDS)
    with open_reader(str(runs_db.path)) as reader:
        run = reader.resolve("zscore-synthetic")
        values = reader.equity_values(run["id"], initial_cash=run["initial_cash"])
    for name in ("ts", "cash", "position", "close", "equity", "drawdown"):
        assert table.column(name).to_numpy().tobytes() == values[name].tobytes(), name
