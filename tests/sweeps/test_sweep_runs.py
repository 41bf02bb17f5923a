"""Sweeps against independent references: each run equals the same configuration run alone by
run_backtest.py --param; a killed driver or worker loses and duplicates nothing; bad input is one line."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import run_backtest
from cli import run_sweep
from tests.sweeps.conftest import REPO, child_env, rows

TRADE_COLUMNS = "side, qty, entry_ts, exit_ts, entry_price, exit_price, fees, pnl, exit_reason"


def sweep_json(capsys, *args: str | Path) -> dict:
    capsys.readouterr()
    rc = run_sweep.main([str(a) for a in args])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return json.loads(captured.out)  # all of stdout is one JSON object


def alone(capsys, tmp_path: Path, data: Path, strategy: str, params: dict, fee_bps: float = 10.0,
          extra: tuple[str, ...] = ()) -> tuple[dict, list[tuple]]:
    """The same configuration through run_backtest.py --param: (json payload, its trades from its own DB)."""
    db = f"sqlite:///{tmp_path / 'alone.db'}"
    args = ["--data", str(data), "--strategy", strategy, "--json", "--db", db, "--fee-bps", str(fee_bps), *extra]
    for name, value in params.items():
        args += ["--param", f"{name}={value}"]
    capsys.readouterr()
    assert run_backtest.main(args) == 0
    payload = json.loads(capsys.readouterr().out)
    return payload, rows(db, f"select {TRADE_COLUMNS} from trades where run_key = (select key from runs where id = :r) order by seq",
                         r=payload["run_id"])


def equity_ts(url: str, run_id: str):
    """A stored run's equity bar times, read through the store (series are stored columnar)."""
    from store.db import init_db
    from store.repository import load_equity

    engine = init_db(url)
    try:
        return load_equity(engine, run_id)[0]
    finally:
        engine.dispose()


def stored_trades(url: str, run_id: str) -> list[tuple]:
    return rows(url, f"select {TRADE_COLUMNS} from trades where run_key = (select key from runs where id = :r) order by seq", r=run_id)


def activity_counts(url: str, run_id: str) -> tuple[int, int]:
    """(orders, fills) stored for a run."""
    key = "(select key from runs where id = :r)"
    return tuple(rows(url, f"select (select count(*) from orders where run_key = {key}), "
                           f"(select count(*) from fills where run_key = {key})", r=run_id)[0])


ORDER_COLUMNS = "client_id, ts, type, side, qty, target_fraction, price, reason, status, signal, threshold"
FILL_COLUMNS = "order_client_id, ts, side, qty, price, fee, reason"


def test_trials_keep_trades_and_series_and_store_orders_keeps_their_orders_too(candles, db_url, tmp_path,
                                                                                capsys) -> None:
    """By default a trial stores what judging and reporting a sweep read (metrics, trades, per-bar series),
    not its orders and fills, and the inspector says so instead of listing none; --store-orders stores them,
    equal to the same configuration's run through run_backtest.py."""
    from cli.inspect_trades import main as inspect_main

    grid = ["--data", candles, "--strategy", "zscore", "--grid", "window=20,50", "--workers", "1", "--db", db_url]
    lean = sweep_json(capsys, *grid, "--name", "lean", "--json")
    full = sweep_json(capsys, *grid, "--name", "full", "--store-orders", "--json")
    def by_window(summary: dict) -> list[dict]:
        return sorted(summary["runs"], key=lambda r: r["params"]["window"])
    for trial, stored in zip(by_window(lean), by_window(full)):
        assert trial["params"] == stored["params"] and trial["metrics"] == stored["metrics"]
        payload, trades = alone(capsys, tmp_path, candles, "zscore", trial["params"])
        alone_db = f"sqlite:///{tmp_path / 'alone.db'}"
        assert stored_trades(db_url, trial["run_id"]) == stored_trades(db_url, stored["run_id"]) == trades
        assert list(equity_ts(db_url, trial["run_id"])) == list(equity_ts(alone_db, payload["run_id"]))
        assert activity_counts(db_url, trial["run_id"]) == (0, 0)
        for table, columns, key in (("orders", ORDER_COLUMNS, "client_id"), ("fills", FILL_COLUMNS, "ts")):
            query = (f"select {columns} from {table} where run_key = (select key from runs where id = :r) "
                     f"order by {key}, id")
            assert rows(db_url, query, r=stored["run_id"]) == rows(alone_db, query, r=payload["run_id"]) != []
    capsys.readouterr()
    assert inspect_main(["--db", db_url, "orders", lean["runs"][0]["run_id"]]) == 1
    err = capsys.readouterr().err
    assert "a sweep trial stored without its orders and fills" in err and "--store-orders" in err
    assert inspect_main(["--db", db_url, "orders", full["runs"][0]["run_id"], "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) > 0
    assert inspect_main(["--db", db_url, "show", lean["runs"][0]["run_id"]]) == 0
    assert "not stored: a sweep trial" in " ".join(capsys.readouterr().out.split())


def test_sweep_on_a_local_dask_cluster_equals_runs_one_by_one(candles, db_url, tmp_path, capsys) -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster:  # a free port: suites may run side by side
        out = sweep_json(capsys, "--data", candles, "--strategy", "zscore", "--grid", "window=20,50",
                         "--grid", "entry_z=1.5:2.5:0.5", "--grid", "fee_bps=0,10", "--scheduler",
                         cluster.scheduler_address, "--db", db_url, "--name", "dask-grid", "--json")
    assert out["sweep"] == "dask-grid" and len(out["runs"]) == 2 * 3 * 2
    assert {json.dumps(r["params"], sort_keys=True) for r in out["runs"]} == {
        json.dumps({"window": w, "entry_z": z, "fee_bps": f}, sort_keys=True)
        for w in (20, 50) for z in (1.5, 2.0, 2.5) for f in (0.0, 10.0)}
    for run in out["runs"]:
        assert run["status"] == "completed" and run["data"] == str(candles) and run["seed"] is None
        params = dict(run["params"])
        fee = params.pop("fee_bps")
        payload, trades = alone(capsys, tmp_path, candles, "zscore", params, fee_bps=fee)
        assert run["metrics"]["final_equity"] == payload["metrics"]["final_equity"]  # exactly, not approximately
        assert set(run["metrics"]) == set(payload["metrics"])  # the keys of run_backtest.py --json
        assert stored_trades(db_url, run["run_id"]) == trades and len(trades) == payload["metrics"]["trades"] > 0
    best = max(out["runs"], key=lambda r: r["metrics"]["sharpe"])
    assert out["best"]["run_id"] == best["run_id"]
    assert 0.0 <= out["deflated_sharpe"] <= 1.0 and 0.0 <= out["pbo"] <= 1.0
    assert rows(db_url, "select status from sweeps where name = 'dask-grid'") == [("completed",)]


def test_score_strategy_sweep_over_seeds_equals_runs_one_by_one(candles, db_url, tmp_path, capsys) -> None:
    tiny = {"train_days": 30, "retrain_days": 60, "max_steps": 40, "warm_start_steps": 10, "hidden": 16,
            "sample_check_samples": 0, "threshold_quantile": 0.95}
    fixed = [a for k, v in tiny.items() for a in ("--param", f"{k}={v}")]
    out = sweep_json(capsys, "--data", candles, "--strategy", "score", *fixed, "--grid", "max_hold_bars=12,48",
                     "--seeds", "0", "1", "--workers", "2", "--db", db_url, "--name", "score-seeds", "--json")
    assert len(out["runs"]) == 4 and {r["seed"] for r in out["runs"]} == {0, 1}
    for run in out["runs"]:
        params = {**tiny, **run["params"], "seed": run["seed"]}
        payload, trades = alone(capsys, tmp_path, candles, "score", params)
        assert run["metrics"]["final_equity"] == payload["metrics"]["final_equity"]
        assert stored_trades(db_url, run["run_id"]) == trades
    folds = rows(db_url, "select count(*) from model_versions m join sweep_runs s on s.run_id = m.run_id")
    assert folds[0][0] > 4  # every run's walk-forward models are stored with it


def test_a_bad_configuration_fails_alone_with_its_error(candles, db_url, capsys) -> None:
    out = sweep_json(capsys, "--data", candles, "--strategy", "zscore", "--grid", "window=1,30", "--workers", "1",
                     "--db", db_url, "--name", "one-bad", "--json")
    by_window = {r["params"]["window"]: r for r in out["runs"]}
    assert by_window[1]["status"] == "failed" and "window must be >= 2" in by_window[1]["error"]
    assert by_window[30]["status"] == "completed" and out["best"]["run_id"] == by_window[30]["run_id"]
    assert rows(db_url, "select status, error from runs where id = :r", r=by_window[1]["run_id"]) == [
        ("failed", "ValueError: window must be >= 2, got 1")]


@pytest.mark.parametrize("args, message", [
    (["--grid", "windw=1,2"], "unknown parameter 'windw'"),
    (["--grid", "window=a,b"], "window='a': expected int"),
    (["--grid", "entry_z=3:1:0.5"], "need STEP > 0 and STOP >= START"),
    (["--seeds", "0", "1"], "has no seed parameter"),
    (["--search", "optuna", "--trials", "3"], "needs --trials N (>= 1) and at least one --space"),
    (["--param", "window=20", "--grid", "window=10,20"], "both swept and fixed"),
])
def test_bad_input_is_one_line_and_stores_nothing(candles, db_url, capsys, args, message) -> None:
    rc = run_sweep.main(["--data", str(candles), "--strategy", "zscore", "--db", db_url, "--name", "bad", *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: ") and message in err and "\n" not in err, err
    assert _count(db_url, "runs") == 0 and _count(db_url, "sweeps") == 0


def test_a_missing_data_file_is_refused_before_any_database_exists(tmp_path, capsys) -> None:
    db = tmp_path / "new.db"
    rc = run_sweep.main(["--data", str(tmp_path / "none.csv"), "--strategy", "zscore", "--grid", "window=20,30",
                         "--db", str(db), "--workers", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == f"error: {tmp_path / 'none.csv'}: file not found"
    assert not db.exists()


def _count(url: str, table: str) -> int:
    try:
        return rows(url, f"select count(*) from {table}")[0][0]
    except Exception:  # nothing was created at all
        return 0


def _count_runs(url: str, name: str) -> int:
    try:
        return rows(url, "select count(*) from sweep_runs s join sweeps w on w.id = s.sweep_id "
                         "where w.name = :n", n=name)[0][0]
    except Exception:  # the file or tables do not exist yet
        return 0


def _start_sweep(data: Path, url: str, name: str, workers: int) -> subprocess.Popen:
    args = [sys.executable, "run_sweep.py", "--data", str(data), "--strategy", "zscore", "--grid",
            "window=20,30,40,50", "--grid", "entry_z=1.5,2,2.5", "--workers", str(workers), "--db", url,
            "--name", name, "--json"]
    return subprocess.Popen(args, cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def _wait_for_runs(url: str, name: str, at_least: int, proc: subprocess.Popen, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = _count_runs(url, name)
        if n >= at_least:
            return n
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} runs stored in {timeout} s")


def _assert_each_configuration_once(url: str, name: str) -> None:
    links = rows(url, "select s.config_hash, r.status from sweep_runs s join sweeps w on w.id = s.sweep_id "
                      "join runs r on r.id = s.run_id where w.name = :n", n=name)
    assert len(links) == 12 and len({h for h, _ in links}) == 12
    assert {status for _, status in links} == {"completed"}
    assert rows(url, "select count(*) from runs") == [(12,)]  # no orphan or half-written run rows
    pairs = rows(url, "select s.params from sweep_runs s")  # JSON text on SQLite, a dict on PostgreSQL
    assert len({p if isinstance(p, str) else json.dumps(p, sort_keys=True) for (p,) in pairs}) == 12


def test_sigkill_of_the_driver_then_restart_stores_every_configuration_once(long_candles, db_url) -> None:
    import psutil

    proc = _start_sweep(long_candles, db_url, "killed", workers=2)
    try:
        stored = _wait_for_runs(db_url, "killed", 2, proc)
        pool = psutil.Process(proc.pid).children(recursive=True)  # forkserver, workers, resource tracker
        os.kill(proc.pid, signal.SIGKILL)  # the driver only; its pool's workers lose their parent
        proc.wait(timeout=30)
        _, left = psutil.wait_procs(pool, timeout=20)  # ...and end by themselves, not stay blocked forever
    finally:
        _kill_group(proc)
    assert not left, f"pool processes still running after the driver was killed: {[p.pid for p in left]}"
    assert 2 <= stored < 12
    again = subprocess.run([sys.executable, "run_sweep.py", "--data", str(long_candles), "--strategy", "zscore",
                            "--grid", "window=20,30,40,50", "--grid", "entry_z=1.5,2,2.5", "--workers", "2",
                            "--db", db_url, "--name", "killed", "--json"], cwd=REPO, env=child_env(),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert len(json.loads(again.stdout)["runs"]) == 12
    _assert_each_configuration_once(db_url, "killed")



def test_sigterm_stops_the_sweep_cleanly_and_a_restart_finishes_it(long_candles, tmp_path) -> None:
    """SIGTERM (a scheduler's stop) is handled like Ctrl-C: exit 143 with one line saying finished runs
    are stored, no pool process left behind; the restart stores every configuration once."""
    import psutil

    url = f"sqlite:///{tmp_path / 'term.db'}"
    proc = _start_sweep(long_candles, url, "termed", workers=2)
    try:
        stored = _wait_for_runs(url, "termed", 2, proc)
        pool = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
        _, left = psutil.wait_procs(pool, timeout=20)
        err = proc.stderr.read().decode()
    finally:
        _kill_group(proc)
    assert not left, f"pool processes still running after SIGTERM: {[p.pid for p in left]}"
    assert "stopped by SIGTERM: finished runs are stored; rerun with the same --name to resume" in err
    assert "Traceback" not in err and 2 <= stored < 12
    again = subprocess.run([sys.executable, "run_sweep.py", "--data", str(long_candles), "--strategy", "zscore",
                            "--grid", "window=20,30,40,50", "--grid", "entry_z=1.5,2,2.5", "--workers", "2",
                            "--db", url, "--name", "termed", "--json"], cwd=REPO, env=child_env(),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    _assert_each_configuration_once(url, "termed")

def test_a_killed_worker_is_replaced_and_its_task_retried(long_candles, db_url) -> None:
    import psutil

    proc = _start_sweep(long_candles, db_url, "worker-killed", workers=1)
    try:
        _wait_for_runs(db_url, "worker-killed", 1, proc)
        victims = [c for c in psutil.Process(proc.pid).children(recursive=True)
                   if "forkserver" not in " ".join(c.cmdline())]
        assert victims, "no worker process found"
        for child in victims:
            child.kill()  # SIGKILL mid-task
        out, err = proc.communicate(timeout=300)
    finally:
        _kill_group(proc)
    assert proc.returncode == 0, err.decode()
    assert len(json.loads(out)["runs"]) == 12
    _assert_each_configuration_once(db_url, "worker-killed")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_select_until_chooses_on_earlier_bars_and_reports_on_later_ones(candles, db_url, tmp_path, capsys) -> None:
    from feeds.files import load_bars

    series = load_bars(candles)
    split = int(series.ts_ms[2_500])
    grid = ["--grid", "window=20,40,60", "--grid", "entry_z=1.5,2.5"]
    out = sweep_json(capsys, "--data", candles, "--strategy", "zscore", *grid, "--workers", "2", "--db", db_url,
                     "--name", "split", "--select-until", str(split), "--json")
    trials = [r for (r,) in rows(db_url, "select run_id from sweep_runs where role = 'trial'")]
    trial_ends = [int(equity_ts(db_url, r)[-1]) for r in trials]
    assert len(trial_ends) == 6 and all(end < split for end in trial_ends)  # chosen on bars before the split
    best = out["best"]
    assert best["run_id"] == max(out["runs"], key=lambda r: r["metrics"]["sharpe"])["run_id"]
    held = best["out_of_sample"]
    assert int(equity_ts(db_url, held["run_id"])[0]) == split
    # the held-out result is the same configuration run alone, trading from the split (earlier bars warm up)
    payload, trades = alone(capsys, tmp_path, candles, "zscore", best["params"],
                            extra=("--trade-from", str(split)))
    assert held["metrics"]["final_equity"] == payload["metrics"]["final_equity"]
    assert stored_trades(db_url, held["run_id"]) == trades
    # the out-of-sample run is stored in full (its orders and fills too); the trials without theirs
    assert activity_counts(db_url, held["run_id"]) == activity_counts(f"sqlite:///{tmp_path / 'alone.db'}",
                                                                      payload["run_id"]) > (0, 0)
    assert {activity_counts(db_url, r) for r in trials} == {(0, 0)}
    # bars after the split cannot change the choice: scramble them and sweep again
    frame = series.to_frame()
    later = frame["timestamp"] >= split
    prices = ["open", "high", "low", "close"]
    frame.loc[later, prices] = frame.loc[later, prices].iloc[::-1].to_numpy()  # the future, reversed
    frame.loc[later, "high"] = frame.loc[later, prices].max(axis=1)
    frame.loc[later, "low"] = frame.loc[later, prices].min(axis=1)
    other = tmp_path / "scrambled.csv.gz"
    frame.to_csv(other, index=False)
    again = sweep_json(capsys, "--data", other, "--strategy", "zscore", *grid, "--workers", "2", "--db", db_url,
                       "--name", "split-scrambled", "--select-until", str(split), "--json")
    assert again["best"]["params"] == best["params"]
    def by_params(summary: dict) -> dict:
        return {json.dumps(r["params"], sort_keys=True): r["metrics"] for r in summary["runs"]}

    assert by_params(again) == by_params(out)
    assert again["best"]["out_of_sample"]["metrics"] != held["metrics"]


def test_a_sweep_whose_runs_all_fail_says_why_once_and_exits_1(candles, tmp_path, capsys) -> None:
    """Every run failing for one reason (here a window the strategy refuses) is one grouped line, not N
    silent 'failed' rows; with nothing to select the exit status is 1, and --json still prints the summary."""
    db = f"sqlite:///{tmp_path / 'fail.db'}"
    base = ["--data", str(candles), "--strategy", "zscore", "--grid", "window=1", "--grid", "entry_z=1.5,2,2.5",
            "--workers", "1", "--db", db]
    capsys.readouterr()
    assert run_sweep.main([*base, "--name", "all-fail"]) == 1
    out = " ".join(capsys.readouterr().out.split())  # as read, whatever the terminal's width
    reason = "window must be >= 2, got 1"
    assert "3 runs failed:" in out and out.count(reason) == 1 and "3 × ValueError" in out
    assert "nothing to select" in out and "Deflated Sharpe Ratio" not in out
    assert run_sweep.main([*base, "--name", "all-fail-json", "--json"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["best"] is None and {r["status"] for r in payload["runs"]} == {"failed"}
    assert all(reason in r["error"] for r in payload["runs"])


@pytest.mark.parametrize("until, reason", [("1999-01-01", "fewer than 2 bars of"),
                                           ("2100-01-01", "no bar of")])
def test_a_split_that_leaves_a_side_without_bars_is_refused_before_any_run(candles, tmp_path, capsys, until,
                                                                           reason) -> None:
    """The driver reads each file's bars once when --select-until is given, so a split outside the data is
    one line and exit 2 before the store is opened, not a sweep of runs that all fail in the workers."""
    db = tmp_path / "split.db"
    capsys.readouterr()
    status = run_sweep.main(["--data", str(candles), "--strategy", "zscore", "--grid", "window=10,20",
                             "--workers", "1", "--db", str(db), "--name", "split", "--select-until", until, "--json"])
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --select-until") and reason in lines[0]
    assert str(candles) in lines[0] and "its bars run" in lines[0]
    assert not db.exists()  # nothing written


def test_some_failed_runs_are_summarised_under_the_table_and_the_sweep_succeeds(candles, tmp_path, capsys) -> None:
    db = f"sqlite:///{tmp_path / 'some.db'}"
    capsys.readouterr()
    assert run_sweep.main(["--data", str(candles), "--strategy", "zscore", "--grid", "window=1,30", "--workers", "1",
                           "--db", db, "--name", "one-bad"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "1 run failed:" in out and "1 × ValueError: window must be >= 2, got 1" in out
    assert "Deflated Sharpe Ratio" in out
