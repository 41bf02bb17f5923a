"""``python -m store delete RUN``: a run goes with all its rows, other runs keep theirs, and the name is free again.

Refused, with nothing deleted: a run whose owner process is alive, a 'running' run with no owner to check
(unless --force), a run of a sweep, an unknown run. SQLite and PostgreSQL (whose bulk tables cascade by the
triggers of migration 0006, not by foreign keys).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

import run_backtest
from feeds.synthetic import synthetic_bars
from store.__main__ import main as store_main
from store.db import init_db
from store.lease import LeaseOwner
from store.maintenance import NotDeletable, delete_run
from store.repository import RunSpec, create_run, find_run
from store.schema import FillRow, OrderRow, RunLeaseRow, RunRow, SeriesChunkRow, SweepRow, TradeRow
from store.sweeps import SweepLink, open_sweep, save_sweep_run

ROWS = {"orders": OrderRow, "fills": FillRow, "trades": TradeRow}


def _counts(engine, run_id: str) -> dict[str, int]:
    """Rows of ``run_id`` per table, found through the run's key (orders, fills, trades) or id (chunks)."""
    with engine.connect() as conn:
        key = conn.execute(select(RunRow.key).where(RunRow.id == run_id)).scalar()
        out = {name: conn.execute(select(func.count()).select_from(row).where(row.run_key == key)).scalar_one()
               for name, row in ROWS.items()}
        out["series_chunks"] = conn.execute(select(func.count()).select_from(SeriesChunkRow)
                                            .where(SeriesChunkRow.run_id == run_id)).scalar_one()
        out["runs"] = conn.execute(select(func.count()).select_from(RunRow).where(RunRow.id == run_id)).scalar_one()
    return out


@pytest.fixture
def two_runs(db_url: str, tmp_path: Path):
    data = tmp_path / "bars.csv"
    synthetic_bars(3_000, seed=5).to_frame().to_csv(data, index=False)
    for name in ("gone", "kept"):
        assert run_backtest.main(["--data", str(data), "--strategy", "zscore", "--db", db_url, "--name", name,
                                  "--json"]) == 0
    engine = init_db(db_url)
    yield engine, data
    engine.dispose()


def test_delete_takes_the_run_and_its_rows_and_frees_the_name(two_runs, db_url: str, capsys) -> None:
    engine, data = two_runs
    gone, kept = find_run(engine, "gone").id, find_run(engine, "kept").id
    before_gone, before_kept = _counts(engine, gone), _counts(engine, kept)
    assert min(before_gone.values()) > 0  # something to delete in every table
    capsys.readouterr()
    assert run_backtest.main(["--data", str(data), "--strategy", "zscore", "--db", db_url, "--name", "gone"]) == 2
    err = capsys.readouterr().err
    assert "already used by run" in err and f"python -m store delete {gone[:12]}" in err
    assert store_main(["delete", "gone", "--db", db_url]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"deleted run {gone[:12]} ('gone'), backtest zscore, completed: ")
    assert f"{before_gone['orders']:,} orders, {before_gone['fills']:,} fills, {before_gone['trades']:,} trades" in said
    assert _counts(engine, gone) == dict.fromkeys(before_gone, 0)
    assert _counts(engine, kept) == before_kept
    assert run_backtest.main(["--data", str(data), "--strategy", "zscore", "--db", db_url, "--name", "gone",
                              "--json"]) == 0  # the name is free again


def test_unknown_run_and_usage_errors_are_one_line_exit_2(two_runs, db_url: str, capsys) -> None:
    engine, _ = two_runs
    capsys.readouterr()
    assert store_main(["delete", "nope", "--db", db_url]) == 2
    assert capsys.readouterr().err.strip() == "error: no run matches 'nope' (an id, a unique id prefix or a name)"
    with pytest.raises(SystemExit) as usage:
        store_main(["delete", "--db", db_url])
    assert usage.value.code == 2
    assert find_run(engine, "gone") is not None and find_run(engine, "kept") is not None


def test_a_run_with_a_live_owner_is_refused_a_dead_one_is_deleted(db_url: str) -> None:
    engine = init_db(db_url)
    spec = RunSpec(mode="backtest", strategy="zscore", initial_cash=1.0)
    live = create_run(engine, RunSpec(**{**spec.__dict__, "name": "live"}), extra_rows=[LeaseOwner.me().new_row()])
    with pytest.raises(NotDeletable, match="is being run by pid .* stop that process first"):
        delete_run(engine, "live")
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout.strip()
    owner = LeaseOwner.me()
    dead = create_run(engine, RunSpec(**{**spec.__dict__, "name": "dead"}),
                      extra_rows=[LeaseOwner(owner.token, owner.host, int(dead_pid)).new_row()])
    assert delete_run(engine, "dead").run_id == dead
    with engine.connect() as conn:
        assert conn.execute(select(RunLeaseRow.run_id)).scalars().all() == [live]  # the owner row went with it
    assert find_run(engine, live) is not None
    engine.dispose()


def test_a_running_run_without_owner_needs_force(db_url: str) -> None:
    engine = init_db(db_url)
    run = create_run(engine, RunSpec(mode="backtest", strategy="zscore", initial_cash=1.0, name="old"))
    with pytest.raises(NotDeletable, match="records no owner process .* --force"):
        delete_run(engine, run[:8])  # a unique id prefix
    assert find_run(engine, run) is not None
    assert delete_run(engine, "old", force=True).status == "running"
    assert find_run(engine, run) is None
    engine.dispose()


def test_a_sweeps_run_is_kept_with_the_sweep(db_url: str) -> None:
    engine = init_db(db_url)
    sweep_id, _ = open_sweep(engine, "grid", "zscore", {})
    run = save_sweep_run(engine, RunSpec(mode="backtest", strategy="zscore", initial_cash=1.0),
                         SweepLink(sweep_id, "trial", "h" * 16, {"window": 2}, "bars.csv", "0" * 64, None),
                         None, error="ValueError: bad")
    with pytest.raises(NotDeletable, match="belongs to sweep .grid.*python -m store delete-sweep grid --db … deletes"):
        delete_run(engine, run)
    assert find_run(engine, run) is not None
    engine.dispose()


def _sweep(db_url: str, data: Path, name: str, *extra: str) -> None:
    from cli import run_sweep

    assert run_sweep.main(["--data", str(data), "--strategy", "zscore", "--grid", "window=10,20", "--workers", "1",
                           "--db", db_url, "--name", name, "--store-orders", "--json", *extra]) == 0


def test_delete_sweep_takes_its_runs_and_their_rows_and_frees_its_name(two_runs, db_url: str, capsys) -> None:
    """A sweep's name resumes it, so reusing the name for another sweep (here another strategy) needs the
    old one deleted: the sweep, its runs and all their rows go; other runs and sweeps keep theirs."""
    from cli import run_sweep
    from store.sweeps import sweep_runs

    engine, data = two_runs
    _sweep(db_url, data, "old")
    _sweep(db_url, data, "other")
    with engine.connect() as conn:
        sweep_ids = dict(conn.execute(select(SweepRow.name, SweepRow.id)).all())
    old = [r["id"] for r in sweep_runs(engine, sweep_ids["old"])]
    other = [r["id"] for r in sweep_runs(engine, sweep_ids["other"])]
    kept = find_run(engine, "kept").id
    before = {run: _counts(engine, run) for run in [*other, kept]}
    gone = [_counts(engine, run) for run in old]
    assert len(old) == 2 and all(min(c.values()) > 0 for c in gone)
    capsys.readouterr()
    refused = ["--data", str(data), "--strategy", "buyhold", "--workers", "1", "--db", db_url, "--name", "old"]
    assert run_sweep.main(refused) == 2
    assert "python -m store delete-sweep old --db" in capsys.readouterr().err
    assert store_main(["delete-sweep", "old", "--db", db_url]) == 0
    said = capsys.readouterr().out
    total = sum(c["orders"] for c in gone)
    assert said.startswith("deleted sweep 'old' (zscore, completed) and its 2 runs: ") and f"{total:,} orders" in said
    assert [_counts(engine, run) for run in old] == [dict.fromkeys(gone[0], 0)] * 2
    assert {run: _counts(engine, run) for run in [*other, kept]} == before
    with engine.connect() as conn:
        assert sorted(conn.execute(select(SweepRow.name)).scalars()) == ["other"]
    assert run_sweep.main([*refused, "--json"]) == 0  # the name is free for a new sweep


def test_a_sweep_marked_running_needs_force_and_unknown_sweeps_are_one_line(db_url: str, capsys) -> None:
    engine = init_db(db_url)
    open_sweep(engine, "live", "zscore", {})  # as a running (or killed) driver leaves it
    capsys.readouterr()
    assert store_main(["delete-sweep", "live", "--db", db_url]) == 2
    assert "is marked running" in capsys.readouterr().err
    assert store_main(["delete-sweep", "nope", "--db", db_url]) == 2
    assert capsys.readouterr().err.strip() == "error: no sweep named 'nope'"
    assert store_main(["delete-sweep", "live", "--db", db_url, "--force"]) == 0
    assert "deleted sweep 'live' (zscore, running) and its 0 runs" in capsys.readouterr().out
    engine.dispose()
