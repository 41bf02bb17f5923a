"""API keys in the environment never reach --exchange-url, the database or the output.

The session's zscore run was started with BINANCE_API_KEY / BINANCE_API_SECRET (and
BINANCE_SECRET) set to recognisable fake values and --exchange-url pointing at the loopback
exchange, whose request log records every header and parameter it received.
"""
from __future__ import annotations

import json

from .conftest import PaperRun
from .helpers import FAKE_KEY, FAKE_SECRET

SECRETS = (FAKE_KEY, FAKE_SECRET)


def test_no_request_carries_the_keys(zscore_paper: PaperRun) -> None:
    requests = zscore_paper.server.requests
    assert len(requests) > 10
    for r in requests:
        text = json.dumps([r["path"], r["params"], r["headers"]])
        assert not any(s in text for s in SECRETS), f"a key reached the exchange: {r}"
        assert not {h.lower() for h in r["headers"]} & {"x-mbx-apikey", "x-bapi-api-key"}, r["headers"]
        assert "signature" not in r["params"] and "timestamp" not in r["params"], r["params"]
        assert r["remote"] == "127.0.0.1"
    # Only public market-data endpoints were used.
    assert {r["path"] for r in requests} <= {"/api/v3/exchangeInfo", "/api/v3/time", "/api/v3/klines"}


def test_keys_appear_nowhere_in_the_database_or_the_output(zscore_paper: PaperRun) -> None:
    assert zscore_paper.rc == 0
    files = sorted(zscore_paper.db.parent.glob(zscore_paper.db.name + "*"))  # the .db and any -wal / -shm
    assert files
    for path in files:
        data = path.read_bytes()
        assert not any(s.encode() in data for s in SECRETS), f"a key is stored in {path.name}"
    for text in (zscore_paper.stdout, zscore_paper.stderr, json.dumps(zscore_paper.run)):
        assert not any(s in text for s in SECRETS)
