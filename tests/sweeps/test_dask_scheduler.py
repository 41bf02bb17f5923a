"""--scheduler against a Dask cluster started as separate processes (`dask scheduler`, `dask worker`),
bound to 127.0.0.1 on random ports, as a user would run one."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.sweeps.conftest import REPO, child_env, rows


def _dask_cli() -> list[str]:
    exe = Path(sys.executable).with_name("dask")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("dask")
    if found is None:
        pytest.fail("the `dask` command (package distributed, in requirements.txt) is not installed")
    return [found]


@pytest.fixture()
def dask_cluster(tmp_path: Path):
    """A scheduler and one single-threaded worker process; yields the scheduler's tcp:// address."""
    info = tmp_path / "scheduler.json"
    env = child_env()
    procs = [subprocess.Popen([*_dask_cli(), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(info)],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)]
    try:
        deadline = time.monotonic() + 60
        while not info.exists() or not info.read_text().strip():
            assert procs[0].poll() is None, procs[0].stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "scheduler did not start"
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        procs.append(subprocess.Popen([*_dask_cli(), "worker", "--scheduler-file", str(info), "--host", "127.0.0.1",
                                       "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                                       "--local-directory", str(tmp_path / "worker")],
                                      cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      start_new_session=True))
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(1, timeout=60)
        yield address
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)


def test_scheduler_flag_runs_the_sweep_on_separate_dask_processes(dask_cluster, candles, db_url) -> None:
    done = subprocess.run([sys.executable, "run_sweep.py", "--data", str(candles), "--strategy", "zscore",
                           "--grid", "window=20,40", "--grid", "entry_z=2,2.5", "--scheduler", dask_cluster,
                           "--db", db_url, "--name", "on-dask", "--json"],
                          cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert len(out["runs"]) == 4 and all(r["status"] == "completed" for r in out["runs"])
    assert rows(db_url, "select count(*) from sweep_runs") == [(4,)]
    from distributed import Client

    with Client(dask_cluster, timeout="30s") as client:  # the cluster, not the driver, ran the backtests
        keys = client.run_on_scheduler(lambda dask_scheduler: sorted(
            {str(t[0]) for t in dask_scheduler.transition_log if str(t[0]).startswith("run_task")}))
    assert len(keys) == 4
    local = subprocess.run([sys.executable, "run_sweep.py", "--data", str(candles), "--strategy", "zscore",
                            "--grid", "window=20,40", "--grid", "entry_z=2,2.5", "--workers", "1",
                            "--db", db_url, "--name", "local", "--json"],
                           cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=300)
    assert local.returncode == 0, local.stderr
    final = {json.dumps(r["params"], sort_keys=True): r["metrics"]["final_equity"] for r in out["runs"]}
    assert final == {json.dumps(r["params"], sort_keys=True): r["metrics"]["final_equity"]
                     for r in json.loads(local.stdout)["runs"]}


def test_an_unreachable_scheduler_is_one_line(candles, db_url) -> None:
    done = subprocess.run([sys.executable, "run_sweep.py", "--data", str(candles), "--grid", "window=20,40",
                           "--scheduler", "tcp://127.0.0.1:9", "--db", db_url, "--name", "nowhere"],
                          cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")
    assert len(done.stderr.strip().splitlines()) == 1
