"""The terminal listings and exports: columns, truncation, never-truncated exports, show, compare."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.inspect_trades import build_parser

ROOT = Path(__file__).resolve().parents[2]
SUBCOMMANDS = ("runs", "show", "trades", "equity", "orders", "compare", "report", "sweeps", "sweep")


def test_runs_lists_every_run_with_headline_numbers(runs_db, cli) -> None:
    result = cli("--db", runs_db.path, "runs")
    assert result.status == 0, result.err
    for text in ("golden-run", "zscore-synthetic", "fresh-paper", runs_db.golden.run_id[:8], "backtest", "paper",
                 "scripted", "BTC/USDT", "2024-01-01 → 2024-01-01", "completed", "running", "0.51 %", "2.94",
                 "-5.71 %"):
        assert text in result.out, text
    rows = json.loads(cli("--db", runs_db.path, "runs", "--format", "json").out)
    assert [r["name"] for r in rows] == ["fresh-paper", "zscore-synthetic", "golden-run"]  # newest first
    golden = rows[2]
    assert (golden["trades"], golden["return_source"], golden["start_time"]) == (3, "metrics", "2024-01-01T00:00:00Z")
    assert rows[0]["total_return"] is None and rows[0]["trades"] == 0
    assert [r["name"] for r in json.loads(cli("--db", runs_db.path, "runs", "--mode", "paper", "--format",
                                              "json").out)] == ["fresh-paper"]


def test_db_option_is_accepted_after_the_subcommand(runs_db, cli) -> None:
    assert "golden-run" in cli("runs", "--db", runs_db.path).out


def test_tables_truncate_but_exports_never_do(runs_db, cli) -> None:
    table = cli("--db", runs_db.path, "equity", runs_db.zscore.run_id, "--limit", "5")
    assert table.status == 0
    assert "… 2,995 more rows" in table.out
    assert "2020-01-01 04:00" in table.out and "2020-01-01 05:00" not in table.out
    tail = cli("--db", runs_db.path, "equity", runs_db.zscore.run_id, "--limit", "3", "--tail")
    assert "… 2,997 earlier rows" in tail.out and "2020-05-04 23:00" in tail.out
    default = cli("--db", runs_db.path, "trades", runs_db.zscore.run_id)
    assert "… 94 more trades" in default.out  # 144 trades, default --limit 50
    assert "144 trades · net P&L" in default.out
    every = cli("--db", runs_db.path, "trades", runs_db.zscore.run_id, "--limit", "0")
    assert "more trades" not in every.out
    for fmt in ("csv", "json"):
        out = cli("--db", runs_db.path, "equity", runs_db.zscore.run_id, "--format", fmt, "--limit", "5").out
        rows = list(csv.DictReader(io.StringIO(out))) if fmt == "csv" else json.loads(out)
        assert len(rows) == 3_000


def test_equity_drawdown_agrees_with_stored_max_drawdown(runs_db, cli) -> None:
    rows = json.loads(cli("--db", runs_db.path, "equity", runs_db.zscore.run_id, "--format", "json").out)
    show = json.loads(cli("--db", runs_db.path, "show", runs_db.zscore.run_id, "--format", "json").out)
    assert min(r["drawdown"] for r in rows) == pytest.approx(show["run"]["metrics"]["max_drawdown"], abs=1e-12)


def test_show_has_provenance_metrics_beside_baselines_and_folds(runs_db, cli) -> None:
    result = cli("--db", runs_db.path, "show", "golden-run")
    assert result.status == 0, result.err
    out = result.out
    for text in ("Provenance", "ab" * 32, "code version", "fee_bps", "strategy.threshold", "buy-and-hold", "z-score",
                 "Total return", "Sharpe", "Max drawdown", "Model versions", "dsm", "report.ic", "spearman", "report.folds", "report.without_fees",
                 "7 orders", "3 trades", "16 equity", "2 model_versions"):
        assert text in out, text
    assert "-1.25 %" in out  # the stored z-score baseline's total return
    data = json.loads(cli("--db", runs_db.path, "show", "golden-run", "--format", "json").out)
    assert data["run"]["id"] == runs_db.golden.run_id
    assert [f["fold_index"] for f in data["model_versions"]] == [0, 1]
    assert data["model_versions"][0]["has_checkpoint"] is True and "checkpoint" not in data["model_versions"][0]
    assert set(data["run"]["report"]["baselines"]) == {"buyhold", "zscore"}


def test_show_of_a_run_without_metrics_says_so(runs_db, cli) -> None:
    result = cli("--db", runs_db.path, "show", "fresh-paper")
    assert result.status == 0, result.err
    assert "none stored yet" in result.out and "none stored (not a walk-forward" in result.out


def test_orders_show_the_score_and_threshold_behind_each_decision(runs_db, cli) -> None:
    result = cli("--db", runs_db.path, "orders", "golden-run")
    assert result.status == 0, result.err
    assert "-2.500" in result.out and "+2.000" in result.out and "7 filled" in result.out
    rows = json.loads(cli("--db", runs_db.path, "orders", runs_db.zscore.run_id, "--format", "json").out)
    entries = [r for r in rows if r["reason"] == "entry"]
    assert entries and all(abs(r["signal"]) > 2.0 and abs(r["threshold"]) == 2.0 for r in entries)


def test_compare_puts_metrics_side_by_side(runs_db, cli) -> None:
    table = cli("--db", runs_db.path, "compare", "golden-run", "zscore-synthetic", "--baselines")
    assert table.status == 0, table.err
    assert "golden-run" in table.out and "zscore-synthetic" in table.out and "buy-and-hold" in table.out
    out = cli("--db", runs_db.path, "compare", "golden-run", runs_db.zscore.run_id[:10], "golden-run",
              "--format", "csv").out
    rows = {r["metric"]: r for r in csv.DictReader(io.StringIO(out))}
    show = json.loads(cli("--db", runs_db.path, "show", runs_db.zscore.run_id, "--format", "json").out)
    stored = show["run"]["metrics"]
    assert list(rows["sharpe"]) == ["metric", "golden-run", "zscore-synthetic"]  # duplicates given once
    assert float(rows["sharpe"]["zscore-synthetic"]) == stored["sharpe"]  # exact: repr round-trips
    assert int(rows["trades"]["zscore-synthetic"]) == 144
    data = json.loads(cli("--db", runs_db.path, "compare", "golden-run", "zscore-synthetic", "--format", "json").out)
    assert [d["name"] for d in data] == ["golden-run", "zscore-synthetic"]
    assert data[1]["metrics"] == stored


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(cli, command: str) -> None:
    result = cli(command, "--help")
    assert result.status == 0
    assert result.out.startswith(f"usage: inspect_trades.py {command}")
    assert "--db" in result.out


def test_help_runs_as_a_script() -> None:
    done = subprocess.run([sys.executable, "inspect_trades.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stderr == ""
    for command in SUBCOMMANDS:
        assert command in done.stdout
    assert set(build_parser()._subparsers._group_actions[0].choices) == set(SUBCOMMANDS)  # type: ignore[union-attr]


def test_names_are_not_read_as_rich_markup(tmp_path, cli) -> None:
    from tests.inspect.factories import ScriptedStrategy, golden_bars, make_db, store_run

    path = tmp_path / "markup.db"
    db = make_db(path)
    store_run(db, golden_bars(), ScriptedStrategy(), name="[/bold]odd[red]", params={"[/x]": "[b]"})
    db.dispose()
    for args in (("runs",), ("show", "[/bold]odd[red]"), ("trades", "[/bold]odd[red]"),
                 ("compare", "[/bold]odd[red]", "[/bold]odd[red]", "--baselines")):
        result = cli("--db", path, *args)
        assert result.status == 0, (args, result.err)
        assert "[/bold]odd[red]" in result.out, args


def test_runs_says_why_runs_failed_once_per_reason(tmp_path, cli) -> None:
    """Failed runs in the listing: each distinct error once with its count under the table (as text, not
    markup), and the error column in the exports."""
    from store.repository import RunSpec, create_run, mark_run
    from tests.inspect.factories import make_db

    path = tmp_path / "failed.db"
    db = make_db(path)
    errors = ["ValueError: window must be >= 2, got 1"] * 2 + ["RuntimeError: feed [broke]"]
    for error in errors:
        run_id = create_run(db, RunSpec(mode="backtest", strategy="zscore", initial_cash=1e5, timeframe="1h"))
        mark_run(db, run_id, "failed", error)
    create_run(db, RunSpec(mode="backtest", strategy="zscore", initial_cash=1e5, timeframe="1h"))  # running
    db.dispose()
    table = cli("--db", path, "runs")
    assert table.status == 0, table.err
    shown = " ".join(table.out.split())
    assert "3 runs failed: 2 × ValueError: window must be >= 2, got 1 1 × RuntimeError: feed [broke]" in shown
    exported = json.loads(cli("--db", path, "runs", "--format", "json").out)
    assert sorted(r["error"] or "" for r in exported) == ["", *sorted(errors)]


def test_a_killed_backtest_shows_as_interrupted_and_a_finished_one_leaves_no_owner(tmp_path, cli) -> None:
    """A backtest records its process (host, pid, heartbeat) while it runs. Killed with SIGKILL, its row
    stays 'running' in the store, and the listing tells it apart: 'interrupted', pid gone. A run that
    finishes leaves no owner row behind."""
    import signal
    import time

    from sqlalchemy import create_engine, text

    from feeds.synthetic import synthetic_bars

    data = tmp_path / "bars.csv"
    synthetic_bars(80_000, seed=8).to_frame().to_csv(data, index=False)  # under backtrader: long enough to kill
    db = tmp_path / "runs.db"
    base = [sys.executable, "run_backtest.py", "--data", str(data), "--strategy", "zscore", "--db", str(db), "--json"]
    done = subprocess.run([*base, "--name", "finished"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    engine = create_engine(f"sqlite:///{db}")

    def query(sql: str) -> list[tuple]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    assert query("SELECT count(*) FROM run_leases") == [(0,)]
    slow = subprocess.Popen([*base, "--name", "killed", "--engine", "backtrader"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while query("SELECT count(*) FROM runs r JOIN run_leases l ON l.run_id = r.id WHERE r.name = 'killed'") \
                != [(1,)]:
            assert time.monotonic() < deadline and slow.poll() is None, "the run never started"
            time.sleep(0.05)
        alive = json.loads(cli("--db", db, "show", "killed", "--format", "json").out)
        assert alive["run"]["status"] == "running" and alive["interrupted"] is None
        assert alive["owner"]["owner_pid"] == slow.pid
    finally:
        slow.send_signal(signal.SIGKILL)
        slow.wait(30)
    engine.dispose()
    listed = {r["name"]: r for r in json.loads(cli("--db", db, "runs", "--format", "json").out)}
    assert listed["killed"]["status"] == "running"  # as stored: nobody could mark it
    assert listed["killed"]["interrupted"] == f"pid {slow.pid} on this host is gone"
    assert listed["finished"]["status"] == "completed" and listed["finished"]["interrupted"] is None
    table = cli("--db", db, "runs")
    assert table.status == 0 and "interrupted" in table.out
    shown = " ".join(cli("--db", db, "show", "killed").out.split())
    assert f"interrupted (stored as running; pid {slow.pid} on this host is gone)" in shown
    assert f"held until deleted: python -m store delete {listed['killed']['id'][:8]}" in shown
    assert "held until deleted" not in " ".join(cli("--db", db, "show", "finished").out.split())
    # The interrupted run holds its name until it is deleted; the finished one keeps its rows.
    deleted = subprocess.run([sys.executable, "-m", "store", "delete", "killed", "--db", str(db)], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.startswith(f"deleted run {listed['killed']['id'][:12]} ('killed'), backtest zscore, running:")
    assert [r["name"] for r in json.loads(cli("--db", db, "runs", "--format", "json").out)] == ["finished"]
