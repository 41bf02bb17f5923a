"""run_backtest.py --exchange/--symbol: candles downloaded where missing (real ccxt, loopback exchange),
and the run equals the same backtest on the downloaded file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from testkit.candles import random_walk_bars

REPO = Path(__file__).resolve().parents[2]
N = 800


def backtest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BTC_SCORE_DATA_CACHE": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, str(REPO / "run_backtest.py"), "--strategy", "zscore", "--json",
                           "--db", str(tmp_path / "runs.db"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180)


def klines(srv):
    return [r for r in srv.requests if r["path"] == "/api/v3/klines"]


def test_downloads_when_needed_then_reuses_the_cache(make_server, tmp_path):
    data = random_walk_bars(N, seed=31)
    srv = make_server(data, N - 1, speed=0.0, offset_ms=60_000)  # every candle closed
    market = ["--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1m", "--exchange-url", srv.url]
    first = backtest(tmp_path, *market)
    assert first.returncode == 0, first.stderr
    cached = tmp_path / "cache" / "binance_btcusdt_1m.csv.gz"
    assert cached.exists() and len(klines(srv)) >= 1
    from_file = backtest(tmp_path, "--data", str(cached), "--name", "from-file")
    a, b = json.loads(first.stdout), json.loads(from_file.stdout)
    assert a["data"]["bars"] == b["data"]["bars"] == N and a["data"]["timeframe"] == "1m"
    assert a["metrics"] == b["metrics"] and a["metrics"]["trades"] > 0

    srv.clear_requests()
    again = backtest(tmp_path, *market)  # nothing new on the exchange: one empty page, no re-download
    assert again.returncode == 0, again.stderr
    assert len(klines(srv)) == 1 and json.loads(again.stdout)["metrics"] == a["metrics"]


def test_unknown_symbol_and_data_conflict_are_one_line(make_server, tmp_path):
    data = random_walk_bars(200, seed=3)
    srv = make_server(data, 150, speed=0.0)
    bad = backtest(tmp_path, "--exchange", "binance", "--symbol", "NOPE/USDT", "--exchange-url", srv.url)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "NOPE/USDT" in bad.stderr
    both = backtest(tmp_path, "--symbol", "BTC/USDT", "--data", "x.csv", "--exchange-url", srv.url)
    assert both.returncode == 2 and "alternatives" in both.stderr and len(both.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs.db").exists()
