"""download_history: pagination, incremental resume, atomic cache file, exact candles."""
from __future__ import annotations

import gzip
import threading
from pathlib import Path

import pytest

from feeds.download import download_history, read_cache
from feeds.errors import FatalFeedError, RetryableFeedError
from feeds.retry import RetryPolicy
from testkit.candles import random_walk_bars, read_candles_csv, write_candles_csv

from .conftest import FAST_RETRY, TF_MS, TIMEOUT_MS

N = 2500


@pytest.fixture(scope="module")
def data():
    return random_walk_bars(N, seed=11)


def klines(srv, path="/api/v3/klines"):
    return [r for r in srv.requests if r["path"] == path]


def download(srv, cache, exchange_id="binance", **kw):
    kw.setdefault("retry_policy", FAST_RETRY)
    kw.setdefault("progress", False)
    return download_history(exchange_id, "BTC/USDT", "1m", cache, exchange_url=srv.url,
                            timeout_ms=TIMEOUT_MS, **kw)


@pytest.mark.parametrize("exchange_id, path", [("binance", "/api/v3/klines"), ("bybit", "/v5/market/kline")])
def test_downloads_everything_closed_from_the_first_candle(data, make_server, tmp_path, exchange_id, path):
    src = write_candles_csv(tmp_path / "source.csv.gz", data)
    srv = make_server(data, N - 1, speed=0.0, offset_ms=TF_MS)  # the last candle just closed
    cache = download(srv, tmp_path / "cache.csv.gz", exchange_id)
    assert read_cache(cache) == read_candles_csv(src) == data
    calls = klines(srv, path)
    assert len(calls) == 4  # 1000 + 1000 + 500 + an empty page that ends it
    first = calls[0]["params"]
    assert first.get("startTime", first.get("start")) == "0" and first["limit"] == "1000"
    assert list(tmp_path.glob(".*tmp")) == []


def test_only_closed_candles_and_incremental_resume(data, make_server, tmp_path):
    srv = make_server(data, 1800, speed=0.0)  # candle 1800 in progress
    cache = download(srv, tmp_path / "c.csv.gz", since_ms=data[100].ts_ms)
    assert read_cache(cache) == data[100:1800]
    srv.clear_requests()
    srv.set_time(data[2200].ts_ms + 1)
    download(srv, cache)  # resumes after the last cached candle
    assert read_cache(cache) == data[100:2200]
    assert klines(srv)[0]["params"]["startTime"] == str(data[1800].ts_ms)
    srv.clear_requests()
    download(srv, cache)  # nothing new: one empty page, file untouched
    assert len(klines(srv)) == 1 and read_cache(cache) == data[100:2200]
    with gzip.open(cache, "rt") as fh:  # one header although written in two gzip members
        assert sum(1 for line in fh if line.startswith("timestamp")) == 1


def test_until_is_exclusive_and_plain_csv_works(data, make_server, tmp_path):
    srv = make_server(data, N - 1, speed=0.0, offset_ms=TF_MS)
    cache = download(srv, tmp_path / "c.csv", since_ms=data[10].ts_ms + 5, until_ms=data[20].ts_ms)
    assert read_cache(cache) == data[11:20]  # since rounded up to the next open time


def test_failure_midway_commits_complete_pages_and_leaves_no_temp_file(data, make_server, tmp_path):
    srv = make_server(data, N - 1, speed=0.0, offset_ms=TF_MS)
    srv.inject("http_500", count=None, duration_s=30, path="klines", skip=1)  # page 2 on fails
    cache = tmp_path / "c.csv.gz"
    with pytest.raises(RetryableFeedError):
        download(srv, cache, retry_policy=RetryPolicy(base_delay_s=0.01, max_attempts=2))
    assert read_cache(cache) == data[:1000]  # whole, valid, resumable
    assert list(tmp_path.glob(".*tmp")) == []
    srv.clear_faults()
    download(srv, cache)
    assert read_cache(cache) == data


def test_faults_are_retried_and_duplicates_dropped(data, make_server, tmp_path):
    srv = make_server(data, N - 1, speed=0.0, offset_ms=TF_MS)
    for kind in ("http_429", "bad_json", "duplicate_candle", "timeout"):
        srv.inject(kind, count=1, path="klines", skip=1)
    cache = download(srv, tmp_path / "c.csv.gz")
    assert read_cache(cache) == data
    assert set(srv.fault_hits) == {"http_429", "bad_json", "duplicate_candle", "timeout"}


def test_gaps_are_kept_and_reported_on_stderr(data, make_server, tmp_path, capsys):
    holed = data[:500] + data[510:1200]
    srv = make_server(holed, len(holed) - 1, speed=0.0, offset_ms=TF_MS)
    cache = download(srv, tmp_path / "c.csv.gz", progress=True)
    assert read_cache(cache) == holed
    err = capsys.readouterr().err
    assert "done: 1,190 new rows" in err and "reached 2025-06-01" in err
    assert "1 gap(s) in the exchange's data, largest 10 missing candle(s)" in err


def test_bad_symbol_is_fatal_and_writes_nothing(data, make_server, tmp_path):
    srv = make_server(data, N - 1, speed=0.0)
    with pytest.raises(FatalFeedError, match="NOPE/USDT"):
        download_history("binance", "NOPE/USDT", "1m", tmp_path / "c.csv.gz", exchange_url=srv.url,
                         progress=False)
    assert list(tmp_path.iterdir()) == []


def test_stop_event_interrupts_and_keeps_progress(data, make_server, tmp_path):
    srv = make_server(data, N - 1, speed=0.0, offset_ms=TF_MS)
    srv.inject("http_503", count=None, duration_s=30, path="klines", skip=1)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    from feeds.errors import FeedStopped
    with pytest.raises(FeedStopped):
        download(srv, tmp_path / "c.csv.gz", stop_event=stop,
                 retry_policy=RetryPolicy(base_delay_s=5.0, max_attempts=None))
    assert read_cache(tmp_path / "c.csv.gz") == data[:1000]


REAL = Path("/work/shared/data/btcusdt_1m_binance_2025-06-01_2025-07-01.csv.gz")


@pytest.mark.skipif(not REAL.exists(), reason="shared real-data fixture not available")
def test_real_binance_candles_round_trip_exactly(make_server, tmp_path):
    real = read_candles_csv(REAL)[:3000]
    srv = make_server(real, len(real) - 1, speed=0.0, offset_ms=TF_MS)
    cache = download(srv, tmp_path / "real.csv.gz", since_ms=real[0].ts_ms)
    assert read_cache(cache) == real
