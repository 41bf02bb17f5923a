"""download_data.py as a user runs it: real ccxt in a subprocess against the loopback exchange."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from feeds.download import read_cache
from testkit.candles import random_walk_bars

REPO = Path(__file__).resolve().parents[2]
N = 1500


@pytest.fixture(scope="module")
def data():
    return random_walk_bars(N, seed=23)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "download_data.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def klines(srv):
    return [r for r in srv.requests if r["path"] == "/api/v3/klines"]


@pytest.mark.parametrize("suffix", [".csv.gz", ".parquet"])
def test_download_then_incremental_update(data, make_server, tmp_path, suffix):
    srv = make_server(data, 1200, speed=0.0)  # candle 1200 still open
    out = tmp_path / f"btc{suffix}"
    first = cli("--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1m",
                "--exchange-url", srv.url, "--out", str(out), "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["rows"] == 1200 and summary["gaps"] == 0
    assert read_cache(out) == data[:1200]

    srv.clear_requests()
    srv.set_time(data[N - 1].ts_ms + 60_000 + 1)  # every candle has closed
    second = cli("--timeframe", "1m", "--exchange-url", srv.url, "--out", str(out), "--json")
    assert second.returncode == 0, second.stderr
    assert read_cache(out) == data
    assert klines(srv)[0]["params"]["startTime"] == str(data[1200].ts_ms)  # only the missing candles


def test_since_inclusive_until_exclusive(data, make_server, tmp_path):
    srv = make_server(data, N - 1, speed=0.0)
    out = tmp_path / "span.csv"
    done = cli("--timeframe", "1m", "--exchange-url", srv.url, "--out", str(out), "-q",
               "--since", str(data[10].ts_ms), "--until", str(data[20].ts_ms))
    assert done.returncode == 0, done.stderr
    assert read_cache(out) == data[10:20]


@pytest.mark.parametrize("args, needle", [
    (["--timeframe", "7x"], "--timeframe"),
    (["--out", "candles.txt"], "--out"),
    (["--since", "2024-02-01", "--until", "2024-01-01"], "--until"),
    (["--since", "yesterday-ish"], "--since"),
    (["--timeout-ms", "-5"], "--timeout-ms"),
])
def test_bad_arguments_one_line_no_request(data, make_server, tmp_path, args, needle):
    srv = make_server(data, 100, speed=0.0)
    out_args = [] if "--out" in args else ["--out", str(tmp_path / "x.csv.gz")]
    done = cli("--exchange-url", srv.url, *out_args, *args)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and needle in done.stderr
    assert srv.requests == [] and list(tmp_path.iterdir()) == []


def test_unknown_symbol_is_one_line(data, make_server, tmp_path):
    srv = make_server(data, 100, speed=0.0)
    done = cli("--symbol", "NOPE/USDT", "--exchange-url", srv.url, "--out", str(tmp_path / "x.csv.gz"))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "NOPE/USDT" in done.stderr
    assert not (tmp_path / "x.csv.gz").exists()
