"""The loopback exchange itself, and that nothing secret or non-local ever goes on the wire."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from feeds.ccxt_feed import CcxtCandleClient, open_live_feed
from feeds.download import download_history
from testkit.candles import write_candles_csv

from .conftest import FAST_RETRY, TF_MS, TIMEOUT_MS, take

ROOT = Path(__file__).resolve().parents[2]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=2) as resp:
        return json.loads(resp.read())


def test_binance_klines_like_the_real_api(bars, make_server) -> None:
    srv = make_server(bars, 100, speed=0.0, offset_ms=TF_MS // 2)
    base = f"{srv.url}/api/v3/klines?symbol=BTCUSDT&interval=1m"
    last = get_json(base + "&limit=3")  # no startTime: the last `limit`, newest in progress
    assert [r[0] for r in last] == [b.ts_ms for b in bars[98:101]]
    assert len(last[0]) == 12 and isinstance(last[0][1], str) and last[0][6] == bars[98].ts_ms + TF_MS - 1
    assert float(last[0][4]) == bars[98].close  # closed: final values
    partial = last[-1]  # in progress: half-way partial values, never the final ones
    assert float(partial[1]) == bars[100].open
    assert float(partial[4]) != bars[100].close and float(partial[5]) == pytest.approx(bars[100].volume / 2)
    page = get_json(base + f"&startTime={bars[0].ts_ms + 1}&limit=5000")
    assert len(page) == 100 and page[0][0] == bars[1].ts_ms  # open >= startTime, <= server time
    assert len(get_json(base)) == 101  # default limit 500, only what exists by now
    assert get_json(f"{srv.url}/api/v3/time") == {"serverTime": bars[100].ts_ms + TF_MS // 2}


def test_bybit_klines_newest_first(bars, make_server) -> None:
    srv = make_server(bars, 100, speed=0.0)
    body = get_json(f"{srv.url}/v5/market/kline?category=spot&symbol=BTCUSDT&interval=1"
                    f"&start={bars[95].ts_ms}&limit=3")
    assert body["retCode"] == 0
    assert [int(r[0]) for r in body["result"]["list"]] == [bars[97].ts_ms, bars[96].ts_ms, bars[95].ts_ms]


def test_api_keys_are_never_sent_and_all_traffic_is_loopback(bars, make_server, tmp_path, monkeypatch,
                                                              caplog) -> None:
    secret_key, secret = "KEY-very-secret-123", "SECRET-very-secret-456"
    monkeypatch.setenv("BINANCE_API_KEY", secret_key)
    monkeypatch.setenv("BINANCE_API_SECRET", secret)
    monkeypatch.setenv("BYBIT_API_KEY", secret_key)
    monkeypatch.setenv("BYBIT_API_SECRET", secret)
    srv = make_server(bars, 40)
    caplog.set_level(logging.DEBUG)
    stop = threading.Event()
    feed = open_live_feed("binance", "BTC/USDT", "1m", bars[30].ts_ms, exchange_url=srv.url,
                          timeout_ms=TIMEOUT_MS, stop_event=stop, ws=True, ws_stale_timeout_s=0.5,
                          poll_interval_s=0.03, retry_policy=FAST_RETRY)
    srv.inject("http_500", count=1)

    def wait_for_socket(i: int, bar) -> None:
        deadline = time.monotonic() + 5
        while i == 12 and time.monotonic() < deadline and not any(r["method"] == "WS" for r in srv.requests):
            time.sleep(0.02)

    take(feed, 15, stop_event=stop, on_bar=wait_for_socket)
    download_history("bybit", "BTC/USDT", "1m", tmp_path / "c.csv.gz", exchange_url=srv.url,
                     since_ms=bars[0].ts_ms, progress=False)
    assert CcxtCandleClient.connect("binance", srv.url).exchange.apiKey == ""
    log = srv.requests
    assert {r["path"] for r in log} >= {"/api/v3/klines", "/api/v3/time", "/v5/market/kline"}
    assert any(r["method"] == "WS" for r in log)
    for entry in log:
        assert entry["remote"] == "127.0.0.1"
        headers = {k.lower() for k in entry["headers"]}
        assert not headers & {"x-mbx-apikey", "x-bapi-api-key", "x-bapi-sign"}
        assert "signature" not in entry["params"] and "sign" not in entry["params"]
        assert secret_key not in repr(entry) and secret not in repr(entry)
    assert secret_key not in caplog.text and secret not in caplog.text


def test_cli_serves_a_file_and_runs_a_fault_schedule(bars, tmp_path) -> None:
    data = write_candles_csv(tmp_path / "d.csv.gz", bars[:200])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "testkit.loopback_exchange", "--data", str(data), "--timeframe", "1m",
         "--speed", "60", "--start-at", "100", "--fault-schedule", "0:http_503:1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()  # type: ignore[union-attr]
        assert line.startswith("listening on http://127.0.0.1:"), line
        url = line.split()[-1]
        time.sleep(0.2)  # let the schedule fire
        with pytest.raises(urllib.error.HTTPError) as info:
            get_json(f"{url}/api/v3/time")
        assert info.value.code == 503
        now = get_json(f"{url}/api/v3/time")["serverTime"]
        assert bars[100].ts_ms <= now < bars[100].ts_ms + 60_000
        client = CcxtCandleClient.connect("binance", url, TIMEOUT_MS)
        assert client.fetch_closed_candles("BTC/USDT", "1m", bars[90].ts_ms, 100) == bars[90:100]
    finally:
        proc.terminate()
        proc.wait(5)
    assert proc.returncode == 0
