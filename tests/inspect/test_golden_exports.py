"""CSV/JSON exports of the fixed golden run, compared byte for byte with files under golden/.

The run is deterministic (hand-written candles, scripted decisions, exact arithmetic), and
exports omit run ids and wall-clock times, so these files never need regenerating unless
the export format or the engine's accounting changes. To regenerate deliberately:
``INSPECT_UPDATE_GOLDEN=1 pytest tests/inspect/test_golden_exports.py`` — the tests then
FAIL (so nothing is ever regenerated silently); review the diff and commit the files.
"""
from __future__ import annotations

import csv
import difflib
import io
import json
import os
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"
EXPORTS = [(command, fmt) for command in ("trades", "equity", "orders") for fmt in ("csv", "json")]


@pytest.mark.parametrize(("command", "fmt"), EXPORTS, ids=[f"{c}.{f}" for c, f in EXPORTS])
def test_export_matches_golden(runs_db, cli, command: str, fmt: str) -> None:
    result = cli("--db", runs_db.path, command, "golden-run", "--format", fmt)
    assert result.status == 0, result.err
    path = GOLDEN / f"{command}.{fmt}"
    if os.environ.get("INSPECT_UPDATE_GOLDEN"):
        path.write_text(result.out, encoding="utf-8")
        pytest.fail(f"regenerated {path}; review the diff and commit it, then run without INSPECT_UPDATE_GOLDEN")
    assert path.exists(), f"missing golden file {path} (create it with INSPECT_UPDATE_GOLDEN=1, then review)"
    expected = path.read_text(encoding="utf-8")
    if result.out != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), result.out.splitlines(True),
                                            f"golden/{path.name}", "actual"))
        pytest.fail(f"{command} --format {fmt} differs from golden/{path.name}:\n{diff}")


def test_golden_run_is_what_the_script_says() -> None:
    """The golden files themselves: 3 round trips (signal exit, stop exit, signal exit), 7 filled orders."""
    trades = list(csv.DictReader(io.StringIO((GOLDEN / "trades.csv").read_text())))
    assert [(t["side"], t["exit_reason"], t["entry_price"], t["exit_price"]) for t in trades] == [
        ("long", "signal", "97.25", "102.75"), ("short", "stop", "105.25", "106.5"),
        ("long", "signal", "106.0", "103.5")]
    orders = json.loads((GOLDEN / "orders.json").read_text())
    assert [o["status"] for o in orders] == ["filled"] * 7
    assert [o["signal"] for o in orders] == [-2.5, 0.75, 2.25, 1.5, -3.0, 0.5, -2.75]
    equity = json.loads((GOLDEN / "equity.json").read_text())
    assert len(equity) == 16 and equity[0]["equity"] == 10_000.0


def test_filters_select_subsets_of_the_golden_rows(runs_db, cli) -> None:
    def seqs(*extra: str) -> list[int]:
        result = cli("--db", runs_db.path, "trades", "golden-run", "--format", "json", *extra)
        assert result.status == 0, result.err
        return [t["seq"] for t in json.loads(result.out)]

    assert seqs() == [0, 1, 2]
    assert seqs("--side", "long") == [0, 2]
    assert seqs("--side", "short") == [1]
    assert seqs("--min-pnl", "0") == [0]
    assert seqs("--max-pnl", "-146.29872856186356") == [1, 2]  # inclusive bound, exact stored value
    assert seqs("--reason", "stop") == [1]
    assert seqs("--reason", "stop,signal") == [0, 1, 2]
    assert seqs("--reason", "stop", "--reason", "signal", "--side", "long") == [0, 2]
    # entry times: 03:00, 08:00, 13:00 on 2024-01-01; --from inclusive, --to exclusive (as --start/--end)
    assert seqs("--from", "2024-01-01T08:00", "--to", "2024-01-01T13:00") == [1]
    assert seqs("--from", "2024-01-01T08:00", "--to", "2024-01-01T13:00:01") == [1, 2]
    assert seqs("--from", "2024-01-01T08:00:01") == [2]
    assert seqs("--to", "1704096000001") == [0, 1]  # ms, exclusive
    assert seqs("--to", "1704096001") == [0, 1]  # the same instant in seconds: one epoch-unit rule
    assert seqs("--to", "2024-01-01") == []  # a bare date is its midnight
    assert seqs("--to", "2024-01-02") == [0, 1, 2]
    assert seqs("--from", "2024-01-02") == []


def test_equity_and_order_filters(runs_db, cli) -> None:
    result = cli("--db", runs_db.path, "equity", "golden-run", "--format", "json", "--from", "2024-01-01T05:00",
                 "--to", "2024-01-01T08:00")
    rows = json.loads(result.out)
    assert [r["time"] for r in rows] == ["2024-01-01T05:00:00Z", "2024-01-01T06:00:00Z", "2024-01-01T07:00:00Z"]
    result = cli("--db", runs_db.path, "orders", "golden-run", "--format", "json", "--side", "sell")
    assert [o["client_id"] for o in json.loads(result.out)] == ["o2", "o3", "o6"]
    result = cli("--db", runs_db.path, "orders", "golden-run", "--format", "json", "--reason", "stop")
    (stop,) = json.loads(result.out)
    assert (stop["type"], stop["price"], stop["fill_price"], stop["fill_time"]) == (
        "stop", 106.5, 106.5, "2024-01-01T10:00:00Z")
