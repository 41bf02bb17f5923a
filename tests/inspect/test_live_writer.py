"""The inspector against a database a paper trader is writing to, and its read-only promise."""
from __future__ import annotations

import hashlib
import importlib
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from store.repository import RunSpec, create_run
from tests.inspect.factories import make_db
from tests.inspect.paper_writer import WARMUP_BARS

ROOT = Path(__file__).resolve().parents[2]
N_BARS = 250


def test_inspecting_while_a_paper_trader_writes(tmp_path, cli) -> None:
    for module in ("inspect_tools.html_report", "inspect_tools.png_report"):
        importlib.import_module(module)  # pay plotly/matplotlib import time before the writer's clock runs

    path = tmp_path / "live.db"
    db = make_db(path)
    run_id = create_run(db, RunSpec(mode="paper", strategy="zscore", initial_cash=100_000.0, name="live",
                                    symbol="BTC/USDT", timeframe="1m"))
    db.dispose()
    writer = subprocess.Popen([sys.executable, "-m", "tests.inspect.paper_writer", str(path), run_id, str(N_BARS),
                               "0.01"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen_bars: list[int] = []
    reports = 0
    try:
        deadline = time.monotonic() + 60
        while writer.poll() is None and time.monotonic() < deadline:
            show = cli("--db", path, "show", "live", "--format", "json")
            assert show.status == 0, show.err
            data = json.loads(show.out)
            counts, run = data["counts"], data["run"]
            # One snapshot: the run row and the per-bar tables agree although commits keep landing.
            assert counts["bars"] == run["bars_processed"]
            assert counts["equity"] == max(0, run["bars_processed"] - WARMUP_BARS)
            seen_bars.append(counts["bars"])
            equity = cli("--db", path, "equity", "live", "--format", "csv")
            assert equity.status == 0, equity.err
            assert len(equity.out.splitlines()) - 1 >= counts["equity"]
            for args in (("runs",), ("trades", "live"), ("orders", "live", "--tail")):
                result = cli("--db", path, *args)
                assert result.status == 0, (args, result.err)
            if reports < 2 and len({b for b in seen_bars if 0 < b < N_BARS}) >= 2:
                result = cli("--db", path, "report", "live", "-o", tmp_path / "live.html", "--png",
                             tmp_path / "live.png")
                assert result.status == 0, result.err
                reports += 1
        _, err = writer.communicate(timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert writer.returncode == 0, err
    assert reports == 2
    assert "stored candles" in (tmp_path / "live.html").read_text(encoding="utf-8")  # exact buy-and-hold opens
    # It watched the run grow: several distinct states strictly between empty and done.
    assert seen_bars == sorted(seen_bars), seen_bars
    assert len({b for b in seen_bars if 0 < b < N_BARS}) >= 3, seen_bars
    final = json.loads(cli("--db", path, "show", "live", "--format", "json").out)
    assert final["counts"]["bars"] == final["run"]["bars_processed"] == N_BARS
    assert final["counts"]["equity"] == N_BARS - WARMUP_BARS
    with sqlite3.connect(path) as conn:
        assert conn.execute("pragma integrity_check").fetchone() == ("ok",)


def test_inspecting_never_changes_the_database(runs_db, cli, tmp_path) -> None:
    path = tmp_path / "copy.db"
    path.write_bytes(runs_db.path.read_bytes())
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    for args in (("runs",), ("show", "golden-run"), ("trades", "golden-run"), ("equity", "golden-run"),
                 ("orders", "golden-run"), ("compare", "golden-run", "zscore-synthetic"),
                 ("report", "golden-run", "-o", str(tmp_path / "r.html"), "--png", str(tmp_path / "r.png"))):
        assert cli("--db", path, *args).status == 0, args
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
