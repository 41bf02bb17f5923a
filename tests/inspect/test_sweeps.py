"""inspect_trades.py on sweeps: the list, one sweep sorted by a metric, and the sweep's HTML report
(self-contained, checked in headless Chromium like the run report)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cli import run_sweep
from feeds.synthetic import synthetic_bars
from tests.inspect.browser import probe, with_probe
from tests.inspect.test_browser import chromium  # noqa: F401  (the fixture: skip or fail without Chromium)


@pytest.fixture(scope="module")
def sweep_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sweeps")
    data = root / "bars.csv.gz"
    series = synthetic_bars(3_000, seed=21)
    series.to_frame().to_csv(data, index=False)
    db = root / "sweeps.db"
    args = ["--data", str(data), "--strategy", "zscore", "--grid", "window=20,40,60", "--grid", "entry_z=1.5,2,2.5",
            "--workers", "1", "--db", str(db), "--json"]
    assert run_sweep.main([*args, "--name", "plain"]) == 0
    assert run_sweep.main([*args, "--name", "split", "--select-until", str(int(series.ts_ms[2_000]))]) == 0
    return db


def test_sweeps_lists_every_sweep_with_its_statistics(sweep_db, cli) -> None:
    result = cli("--db", sweep_db, "sweeps", "--format", "json")
    assert result.status == 0, result.err
    listed = {s["name"]: s for s in json.loads(result.out)}
    assert set(listed) == {"plain", "split"}
    for s in listed.values():
        assert s["status"] == "completed" and s["completed"] == 9 and s["failed"] == 0
        assert 0 <= s["deflated_sharpe"] <= 1 and 0 <= s["pbo"] <= 1
    table = cli("--db", sweep_db, "sweeps")
    assert "plain" in table.out and "DSR" in table.out and "PBO" in table.out


def test_sweep_shows_runs_sorted_by_the_chosen_metric(sweep_db, cli) -> None:
    result = cli("--db", sweep_db, "sweep", "plain", "--sort", "total_return", "--format", "json")
    assert result.status == 0, result.err
    runs = json.loads(result.out)["runs"]
    returns = [r["total_return"] for r in runs]
    assert len(runs) == 9 and returns == sorted(returns, reverse=True)
    assert {(r["param:window"], r["param:entry_z"]) for r in runs} == {(w, z) for w in (20, 40, 60)
                                                                      for z in (1.5, 2.0, 2.5)}
    table = cli("--db", sweep_db, "sweep", "plain")
    assert table.status == 0 and "Deflated Sharpe Ratio" in table.out and "sorted by sharpe" in table.out
    missing = cli("--db", sweep_db, "sweep", "nope")
    assert missing.status == 1 and "no sweep is named 'nope'" in missing.err


def test_sweep_names_why_runs_failed_under_the_table(sweep_db, cli) -> None:
    """Each distinct error once, with its count; an error's text is shown as it is (no markup)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{sweep_db}")
    with engine.begin() as conn:
        ids = [r[0] for r in conn.execute(text(
            "select r.id from runs r join sweep_runs s on s.run_id = r.id join sweeps w on w.id = s.sweep_id "
            "where w.name = 'plain' order by r.id limit 3"))]
        for run_id, error in zip(ids, ["ValueError: bad [bold]x[/bold]", "ValueError: bad [bold]x[/bold]",
                                       "RuntimeError: other"]):
            conn.execute(text("update runs set status = 'failed', error = :e where id = :i"), {"e": error, "i": run_id})
    engine.dispose()
    try:
        table = cli("--db", sweep_db, "sweep", "plain", "--limit", "0")
        assert table.status == 0, table.err
        shown = " ".join(table.out.split())
        assert "3 runs failed:" in shown
        assert "2 × ValueError: bad [bold]x[/bold]" in shown and "1 × RuntimeError: other" in shown
    finally:
        engine = create_engine(f"sqlite:///{sweep_db}")
        with engine.begin() as conn:
            for run_id in ids:
                conn.execute(text("update runs set status = 'completed', error = null where id = :i"), {"i": run_id})
        engine.dispose()


def test_sweep_report_is_self_contained_and_renders(sweep_db, cli, chromium, tmp_path) -> None:  # noqa: F811
    out = tmp_path / "sweep.html"
    result = cli("--db", sweep_db, "report", "split", "-o", out)
    assert result.status == 0, result.err
    page = out.read_text(encoding="utf-8")
    assert page.count("* plotly.js v") == 1 and not re.search(r"<script[^>]*\bsrc=", page)
    for text in ("Deflated Sharpe Ratio", "Probability of Backtest Overfitting", "held out", "buy-and-hold"):
        assert text in page, text
    probed = tmp_path / "probed.html"
    probed.write_text(with_probe(page), encoding="utf-8")
    shown = probe(chromium, probed, tmp_path / "profile")
    assert shown["errors"] == []
    plots = {p["id"]: p for p in shown["plots"]}
    assert set(plots) == {"chart-heatmap", "chart-sharpe", "chart-equity"}
    assert plots["chart-equity"]["traces"] == 4  # best and buy-and-hold, before and after the split
    assert plots["chart-equity"]["line_paths"] >= 4
    assert plots["chart-heatmap"]["heatmaps"] == 1  # drawn as an image, not an SVG trace
    assert plots["chart-sharpe"]["drawn_traces"] == 1
    assert all(p["has_layout"] and p["width"] > 600 for p in plots.values())
    png = cli("--db", sweep_db, "report", "split", "--png", tmp_path / "x.png")
    assert png.status == 1 and "HTML only" in png.err


def test_report_of_a_sweep_where_no_run_completed_says_so(cli, tmp_path) -> None:
    data = tmp_path / "bars.csv.gz"
    synthetic_bars(500, seed=4).to_frame().to_csv(data, index=False)
    db = tmp_path / "fail.db"
    assert run_sweep.main(["--data", str(data), "--strategy", "zscore", "--grid", "window=1", "--grid",
                           "entry_z=1.5,2", "--workers", "1", "--db", str(db), "--name", "none", "--json"]) == 1
    out = tmp_path / "none.html"
    result = cli("--db", db, "report", "none", "-o", out)
    assert result.status == 0, result.err
    page = out.read_text(encoding="utf-8")
    assert "No run completed with a sharpe: nothing to select" in page and "No completed run to chart" in page
    assert "class='kv' id='selection'" not in page  # no table of empty statistics
    assert page.count("window must be &gt;= 2, got 1") == 2  # each run's error, in its row
