"""Loading candle files (feeds/files.py): every malformed file fails with file, line and reason;
good files in every supported layout load to the same bars; gaps, timeframe, resampling, synthetic data."""
from __future__ import annotations

import gzip
import hashlib
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feeds.files import load_bars
from feeds.resample import resample
from domain.series import BarSeries, GapReport
from feeds.synthetic import synthetic_bars
from feeds.validation import DataError, candle_problem

HEADER = "timestamp,open,high,low,close,volume"
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
M = 60_000
H = 3_600_000
GOOD_ROWS = [  # (ts, o, h, l, c, v), one minute apart
    (T0, 100.0, 101.0, 99.0, 100.5, 1.5),
    (T0 + M, 100.5, 102.0, 100.0, 101.0, 2.0),
    (T0 + 2 * M, 101.0, 101.5, 98.5, 99.0, 0.0),
    (T0 + 3 * M, 99.0, 99.5, 97.0, 98.0, 3.25),
]


def csv_text(rows, header: str | None = HEADER) -> str:
    lines = [header] if header else []
    lines += [",".join(str(x) for x in row) for row in rows]
    return "\n".join(lines) + "\n"


def with_row(i: int, row: tuple) -> list[tuple]:
    rows = list(GOOD_ROWS)
    rows[i] = row
    return rows


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_good(series: BarSeries, rows=GOOD_ROWS) -> None:
    assert series.ts_ms.tolist() == [r[0] for r in rows]
    for k, col in enumerate(("open", "high", "low", "close", "volume"), start=1):
        assert getattr(series, col).tolist() == [float(r[k]) for r in rows]
    assert series.ts_ms.dtype == np.int64


# ---- malformed rows: (file text, line, reason) ------------------------------------------------------
# Line numbers are file lines: the header is line 1, GOOD_ROWS[i] is line i + 2.
BAD_ROWS = [
    pytest.param(with_row(1, (T0 + M, "abc", 102, 100, 101, 2)), 3, "open is not a number", id="non-numeric"),
    pytest.param(with_row(2, (T0 + 2 * M, 101, 101.5, 98.5, "nan", 0)), 4, "close is not a number", id="nan"),
    pytest.param(with_row(2, (T0 + 2 * M, 101, 101.5, 98.5, "", 0)), 4, "close is not a number", id="blank"),
    pytest.param(with_row(1, (T0 + M, 100.5, "inf", 100, 101, 2)), 3, "high is missing or not finite", id="inf"),
    pytest.param(with_row(3, (T0 + 3 * M, 99, 99.5, 97, 98, "-inf")), 5, "volume is missing or not finite",
                 id="minus-inf-volume"),
    pytest.param(with_row(1, (T0 + M, 100.5, 102, -1, 101, 2)), 3, "low is not positive", id="negative-price"),
    pytest.param(with_row(0, (T0, 0, 101, 0, 100.5, 1)), 2, "open is not positive", id="zero-price"),
    pytest.param(with_row(1, (T0 + M, 100.5, 100.9, 100, 101, 2)), 3, "high 100.9 < max(open, close) 101.0",
                 id="high-below-close"),
    pytest.param(with_row(1, (T0 + M, 100.5, 102, 100.7, 101, 2)), 3, "low 100.7 > min(open, close) 100.5",
                 id="low-above-open"),
    pytest.param(with_row(3, (T0 + 3 * M, 99, 99.5, 97, 98, -0.5)), 5, "volume is negative", id="negative-volume"),
    pytest.param(with_row(2, (T0 - M, 101, 101.5, 98.5, 99, 0)), 4, "is earlier than the row before", id="unsorted"),
    pytest.param(with_row(2, (T0 + M, 101, 101.5, 98.5, 99, 0)), 4, f"duplicate timestamp {T0 + M}",
                 id="duplicate-ts"),
    pytest.param(with_row(1, (T0 + M + 0.5, 100.5, 102, 100, 101, 2)), 3, "not a whole millisecond",
                 id="fractional-ms"),
]


@pytest.mark.parametrize("rows,line,reason", BAD_ROWS)
def test_bad_row_is_reported_with_file_line_and_reason(tmp_path: Path, rows, line: int, reason: str) -> None:
    path = write(tmp_path, "candles.csv", csv_text(rows))
    with pytest.raises(DataError) as err:
        load_bars(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "1 bad row(s)" in msg
    assert f"line {line}: " in msg
    assert reason in msg.split(f"line {line}: ", 1)[1].splitlines()[0]


def test_bad_iso_timestamp(tmp_path: Path) -> None:
    text = HEADER + "\n2024-01-01T00:00:00Z,1,1,1,1,1\n2024-13-45T00:00:00Z,1,1,1,1,1\n"
    with pytest.raises(DataError, match=r"line 3: timestamp '2024-13-45T00:00:00Z' is neither"):
        load_bars(write(tmp_path, "iso.csv", text))


def test_many_bad_rows_report_the_count_and_the_first_ten(tmp_path: Path) -> None:
    rows = [(T0 + i * M, 100, 99, 98, 100, 1) for i in range(25)]  # every high < close
    with pytest.raises(DataError) as err:
        load_bars(write(tmp_path, "many.csv", csv_text(rows)))
    msg = str(err.value)
    assert "25 bad row(s), first 10:" in msg
    assert [ln.split(":")[0].strip() for ln in msg.splitlines()[1:]] == [f"line {i}" for i in range(2, 12)]


def test_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    text = csv_text(GOOD_ROWS[:2]) + "\n" + csv_text([(T0 + 2 * M, 101, 100.5, 98.5, 101, 0)], header=None)
    # file lines: 1 header, 2-3 good rows, 4 blank, 5 the bad row (high 100.5 < open 101)
    with pytest.raises(DataError, match=r"line 5: high 100.5 < max"):
        load_bars(write(tmp_path, "blank.csv", text))


@pytest.mark.parametrize("bad_ts", ["abc", ""])
def test_one_bad_epoch_timestamp_flags_only_its_row(tmp_path: Path, bad_ts: str) -> None:
    rows = with_row(1, (bad_ts, 100.5, 102.0, 100.0, 101.0, 2.0))
    with pytest.raises(DataError) as err:
        load_bars(write(tmp_path, "ts.csv", csv_text(rows)))
    msg = str(err.value)
    assert "1 bad row(s)" in msg and "line 3: timestamp" in msg


@pytest.mark.parametrize("header,missing", [
    ("timestamp,open,high,low,close", "volume"),
    ("timestamp,open,high,close,volume", "low"),
    ("when,open,high,low,close,volume", "timestamp column"),
])
def test_missing_column(tmp_path: Path, header: str, missing: str) -> None:
    n = header.count(",") + 1
    path = write(tmp_path, "cols.csv", header + "\n" + ",".join(["1"] * n) + "\n")
    with pytest.raises(DataError, match="missing") as err:
        load_bars(path)
    assert str(path) in str(err.value) and missing in str(err.value)


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.csv", "")
    with pytest.raises(DataError, match="file is empty") as err:
        load_bars(path)
    assert str(path) in str(err.value)


def test_header_only_file(tmp_path: Path) -> None:
    path = write(tmp_path, "header.csv", HEADER + "\n")
    with pytest.raises(DataError, match="no candles") as err:
        load_bars(path)
    assert str(path) in str(err.value)


def test_truncated_gzip(tmp_path: Path) -> None:
    rows = [(T0 + i * M, 100, 101, 99, 100, 1) for i in range(2000)]
    blob = gzip.compress(csv_text(rows).encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="cannot be read as CSV") as err:
        load_bars(path)
    assert str(path) in str(err.value)


def test_garbage_bytes(tmp_path: Path) -> None:
    path = tmp_path / "garbage.csv"
    path.write_bytes(bytes(random.Random(1).randrange(128, 256) for _ in range(4096)))
    with pytest.raises(DataError) as err:
        load_bars(path)
    assert str(path) in str(err.value)


def test_garbage_parquet(tmp_path: Path) -> None:
    path = tmp_path / "garbage.parquet"
    path.write_bytes(b"PAR1 this is not parquet" * 10)
    with pytest.raises(DataError, match="cannot be read as Parquet") as err:
        load_bars(path)
    assert str(path) in str(err.value)


def test_directory_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is a directory") as err:
        load_bars(tmp_path)
    assert str(tmp_path) in str(err.value)
    with pytest.raises(DataError, match="file not found"):
        load_bars(tmp_path / "nope.csv")


def test_header_less_file_with_too_few_columns(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="at least 6 columns"):
        load_bars(write(tmp_path, "short.csv", f"{T0},1,1,1,1\n{T0 + M},1,1,1,1\n"))


# ---- good files -------------------------------------------------------------------------------------
def test_csv_with_epoch_ms(tmp_path: Path) -> None:
    path = write(tmp_path, "good.csv", csv_text(GOOD_ROWS))
    series = load_bars(path)
    assert_good(series)
    assert series.timeframe_ms == M
    assert series.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert series.source == str(path) and series.notes == ()


def test_csv_gz_equals_csv(tmp_path: Path) -> None:
    path = tmp_path / "good.csv.gz"
    path.write_bytes(gzip.compress(csv_text(GOOD_ROWS).encode()))
    assert_good(load_bars(path))


def test_csv_header_variants(tmp_path: Path) -> None:
    text = csv_text(GOOD_ROWS, header=" Open_Time , OPEN, High,low ,Close,Volume").replace(",", ", ")
    assert_good(load_bars(write(tmp_path, "variant.csv", text)))


def test_iso_8601_timestamps(tmp_path: Path) -> None:
    iso = ["2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z", "2024-01-01T00:02:00Z", "2024-01-01T00:03:00Z"]
    rows = [(s, *r[1:]) for s, r in zip(iso, GOOD_ROWS)]
    assert_good(load_bars(write(tmp_path, "iso.csv", csv_text(rows, header="datetime,open,high,low,close,volume"))))
    # an explicit offset is converted to UTC: 01:01+01:00 is 00:01Z
    offset = ["2024-01-01T01:00:00+01:00", "2024-01-01T01:01:00+01:00", "2024-01-01T01:02:00+01:00",
              "2024-01-01T01:03:00+01:00"]
    rows = [(s, *r[1:]) for s, r in zip(offset, GOOD_ROWS)]
    assert_good(load_bars(write(tmp_path, "offset.csv", csv_text(rows))))


def test_epoch_seconds_are_converted_with_a_note(tmp_path: Path) -> None:
    rows = [(r[0] // 1000, *r[1:]) for r in GOOD_ROWS]
    series = load_bars(write(tmp_path, "secs.csv", csv_text(rows)))
    assert_good(series)
    assert any("epoch s" in n for n in series.notes)


def test_parquet(tmp_path: Path) -> None:
    frame = pd.DataFrame(GOOD_ROWS, columns=HEADER.split(","))
    path = tmp_path / "good.parquet"
    frame.to_parquet(path)
    assert_good(load_bars(path))
    # a datetime column works too
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
    frame.to_parquet(path)
    assert_good(load_bars(path))


def test_parquet_bad_row_named_by_row_number(tmp_path: Path) -> None:
    frame = pd.DataFrame(with_row(2, (T0 + 2 * M, 101, 101.5, 98.5, 99, -1.0)), columns=HEADER.split(","))
    path = tmp_path / "bad.parquet"
    frame.to_parquet(path)
    with pytest.raises(DataError, match=r"row 3: volume is negative") as err:
        load_bars(path)
    assert str(path) in str(err.value)


def _binance_rows(scale: int) -> list[tuple]:
    """Binance spot kline rows: open_time, o, h, l, c, v, close_time, quote_vol, trades, taker base/quote, ignore."""
    return [(r[0] * scale, *r[1:], (r[0] + M - 1) * scale, r[5] * r[4], 7, r[5] / 2, r[5] * r[4] / 2, 0)
            for r in GOOD_ROWS]


@pytest.mark.parametrize("scale,unit_note", [(1, False), (1000, True)], ids=["ms", "us"])
def test_binance_header_less_kline_csv(tmp_path: Path, scale: int, unit_note: bool) -> None:
    series = load_bars(write(tmp_path, "BTCUSDT-1m-2024-01.csv", csv_text(_binance_rows(scale), header=None)))
    assert_good(series)
    assert series.timeframe_ms == M
    assert any("µs" in n for n in series.notes) == unit_note


def test_binance_bad_row_line_counts_from_one(tmp_path: Path) -> None:
    rows = _binance_rows(1)
    rows[2] = (rows[2][0], 101, 101.5, 102, 99, *rows[2][5:])  # low 102 > min(open, close)
    with pytest.raises(DataError, match=r"line 3: low 102.0 > min"):
        load_bars(write(tmp_path, "kl.csv", csv_text(rows, header=None)))


def test_gaps_are_counted_not_filled(tmp_path: Path) -> None:
    minutes = [0, 1, 2, 5, 6, 10, 11]  # missing 3, 4 (2 bars) and 7, 8, 9 (3 bars)
    rows = [(T0 + k * M, 100, 101, 99, 100, 1) for k in minutes]
    series = load_bars(write(tmp_path, "gaps.csv", csv_text(rows)))
    assert len(series) == 7 and series.timeframe_ms == M  # most common spacing
    assert series.gaps() == GapReport(count=2, missing_bars=5, largest_missing=3, largest_after_ms=T0 + 6 * M)
    assert "2 gaps, 5 missing bars" in series.gaps().describe()
    assert load_bars(write(tmp_path, "nogap.csv", csv_text(GOOD_ROWS))).gaps() == GapReport(0, 0, 0, None)


def test_timeframe_inference_and_override(tmp_path: Path) -> None:
    hours = [0, 1, 2, 4, 5, 6, 9]
    path = write(tmp_path, "h.csv", csv_text([(T0 + k * H, 100, 101, 99, 100, 1) for k in hours]))
    assert load_bars(path).timeframe_ms == H
    assert load_bars(path, timeframe_ms=30 * M).timeframe_ms == 30 * M
    with pytest.raises(DataError, match="at least 2 candles"):
        load_bars(write(tmp_path, "one.csv", csv_text(GOOD_ROWS[:1])))


# ---- resampling -------------------------------------------------------------------------------------
def _minute_series(minutes: list[int], seed: int = 0) -> BarSeries:
    rng = np.random.default_rng(seed)
    n = len(minutes)
    o = 100 + rng.normal(0, 1, n)
    c = 100 + rng.normal(0, 1, n)
    h = np.maximum(o, c) + rng.uniform(0, 1, n)
    lo = np.minimum(o, c) - rng.uniform(0, 1, n)
    v = rng.uniform(0, 5, n)
    return BarSeries(T0 + np.array(minutes, dtype=np.int64) * M, o, h, lo, c, v, M)


def _hand_aggregate(s: BarSeries, members: list[int]) -> tuple:
    return (float(s.open[members[0]]), max(float(s.high[i]) for i in members),
            min(float(s.low[i]) for i in members), float(s.close[members[-1]]),
            sum(float(s.volume[i]) for i in members))


def test_resample_1m_to_1h_matches_hand_aggregation_and_drops_incomplete_buckets() -> None:
    s = _minute_series(list(range(150)))  # 00:00-02:29: hours 0 and 1 complete, hour 2 has 30 of 60
    out = resample(s, H)
    assert out.timeframe_ms == H
    assert out.ts_ms.tolist() == [T0, T0 + H]
    for k, members in enumerate((list(range(0, 60)), list(range(60, 120)))):
        got = (out.open[k], out.high[k], out.low[k], out.close[k], out.volume[k])
        assert got == pytest.approx(_hand_aggregate(s, members), rel=1e-12)
    partial = resample(s, H, complete_only=False)
    assert partial.ts_ms.tolist() == [T0, T0 + H, T0 + 2 * H]
    assert (partial.open[2], partial.high[2], partial.low[2], partial.close[2], partial.volume[2]) == \
        pytest.approx(_hand_aggregate(s, list(range(120, 150))), rel=1e-12)


def test_resample_tiny_hand_table() -> None:
    # six 1m bars → two 3m bars; numbers written out by hand
    s = BarSeries(T0 + np.arange(6, dtype=np.int64) * M,
                  np.array([10.0, 11, 12, 13, 12, 11]), np.array([11.0, 13, 12.5, 14, 13, 12]),
                  np.array([9.0, 10.5, 11, 12, 11.5, 10]), np.array([11.0, 12, 12.2, 12.5, 11, 10.5]),
                  np.array([1.0, 2, 3, 4, 5, 6]), M)
    out = resample(s, 3 * M)
    assert out.ts_ms.tolist() == [T0, T0 + 3 * M]
    assert out.open.tolist() == [10.0, 13.0]
    assert out.high.tolist() == [13.0, 14.0]
    assert out.low.tolist() == [9.0, 10.0]
    assert out.close.tolist() == [12.2, 10.5]
    assert out.volume.tolist() == [6.0, 15.0]


def test_resample_drops_buckets_touched_by_a_gap() -> None:
    minutes = [m for m in range(180) if m != 75]  # hour 1 misses one minute
    out = resample(_minute_series(minutes), H)
    assert out.ts_ms.tolist() == [T0, T0 + 2 * H]


def test_resample_rejects_non_multiple_timeframes() -> None:
    s = _minute_series(list(range(10)))
    with pytest.raises(ValueError):
        resample(s, 90_000)
    with pytest.raises(ValueError):
        resample(s, 30_000)


# ---- synthetic data ------------------------------------------------------------------------------------
def test_synthetic_is_deterministic_per_seed_and_valid(tmp_path: Path) -> None:
    a, b, c = synthetic_bars(2000, seed=5), synthetic_bars(2000, seed=5), synthetic_bars(2000, seed=6)
    for col in ("ts_ms", "open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(a, col), getattr(b, col))
    assert not np.array_equal(a.close, c.close)
    assert all(candle_problem(x.ts_ms, x.open, x.high, x.low, x.close, x.volume) is None for x in a)
    assert np.all(np.diff(a.ts_ms) == a.timeframe_ms)
    assert any("SYNTHETIC" in n for n in a.notes)
    assert np.any(a.open[1:] != a.close[:-1])  # opens differ from the previous close
    # and it passes the file loader's checks after a round trip through CSV
    path = tmp_path / "synthetic.csv"
    a.to_frame().to_csv(path, index=False)
    loaded = load_bars(path)
    assert loaded.ts_ms.tolist() == a.ts_ms.tolist()
    np.testing.assert_allclose(loaded.close, a.close, rtol=1e-15)
    assert loaded.gaps().count == 0


# ---- mixed timestamp units (issue 8 item 1) ----------------------------------------------------------
@pytest.mark.parametrize("header,first_scale,second_scale,unit", [
    (None, 1, 1000, "µs"),  # Binance klines: ms before 2025, µs after, concatenated
    (HEADER, 1 / 1000, 1, "ms"),  # seconds, then milliseconds
    (HEADER, 1, 1_000_000, "ns"),
])
def test_mixed_timestamp_units_are_refused_naming_the_first_other_line(tmp_path: Path, header, first_scale,
                                                                       second_scale, unit) -> None:
    rows = [(int(r[0] * (first_scale if i < 2 else second_scale)), *r[1:]) for i, r in enumerate(GOOD_ROWS)]
    if header is None:
        rows = [(*r, r[0] + 59_999, 1.0, 7, 0.5, 0.5, 0) for r in rows]
    path = write(tmp_path, "mixed.csv", csv_text(rows, header=header))
    with pytest.raises(DataError) as err:
        load_bars(path)
    msg = str(err.value)
    line = 3 if header is None else 4  # the third row: no header line, or after it
    assert len(msg.splitlines()) == 1 and msg.startswith(f"{path}: line {line}: ")
    assert f"in epoch {unit}" in msg and "mixed timestamp units" in msg


def test_mixed_units_exit_2_and_store_nothing(tmp_path: Path, capsys) -> None:
    import run_backtest

    rows = [(r[0] * (1 if i < 2 else 1000), *r[1:]) for i, r in enumerate(GOOD_ROWS)]
    path = write(tmp_path, "mixed.csv", csv_text(rows))
    db = tmp_path / "runs.db"
    rc = run_backtest.main(["--data", str(path), "--strategy", "zscore", "--json", "--db", str(db)])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert "line 4" in captured.err and "mixed timestamp units" in captured.err
    assert not db.exists()


def test_fast_csv_path_equals_the_row_level_path(tmp_path: Path, monkeypatch) -> None:
    import feeds.files

    series = synthetic_bars(5_000, seed=3)
    path = tmp_path / "big.csv.gz"
    series.to_frame().to_csv(path, index=False)
    fast = load_bars(path)
    monkeypatch.setattr(feeds.files, "_load_clean_csv", lambda *a: None)
    slow = load_bars(path)
    for col in ("ts_ms", "open", "high", "low", "close", "volume"):
        assert getattr(fast, col).tobytes() == getattr(slow, col).tobytes() == getattr(series, col).tobytes()
    assert (fast.timeframe_ms, fast.sha256, fast.notes) == (slow.timeframe_ms, slow.sha256, slow.notes)
