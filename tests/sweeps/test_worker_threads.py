"""Local sweep workers run with the BLAS/OpenMP thread count they are given (1 by default), even when
the driver's main module imported numpy: a worker imports that module before any initializer runs,
so the limit must already be in the environment the pool starts with (else N workers × N BLAS threads
on N cores)."""
from __future__ import annotations

import os
import subprocess
import sys

from app.sweep.worker import THREAD_ENV
from tests.sweeps.conftest import REPO, child_env

_DRIVER = """
import numpy  # imported by the main module, as run_sweep.py and a user's script do

def worker_threads():
    import os, threading
    import numpy as np
    np.ones((64, 64)) @ np.ones((64, 64))  # BLAS in use
    return str(len(os.listdir("/proc/self/task")) - threading.active_count())  # threads Python did not start

if __name__ == "__main__":
    from app.sweep.executors import LocalBackend
    backend = LocalBackend(2)
    try:
        print(sorted({backend.executor.submit(worker_threads).result() for _ in range(6)}))
    finally:
        backend.close()
"""


def test_workers_of_a_numpy_importing_driver_run_one_blas_thread(tmp_path) -> None:
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER)
    env = {k: v for k, v in child_env().items() if k not in THREAD_ENV}  # the limit comes from the backend alone
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['0']"  # only the worker's Python threads: no BLAS pool beside them



_IMPORTS_DRIVER = """
import sys


def task_then_modules(task):
    from app.sweep.worker import run_task

    result = run_task(task)
    return result.ok, result.error, sorted({m.split(".")[0] for m in sys.modules} & {"sqlalchemy", "torch"})


if __name__ == "__main__":  # as in run_sweep.py: the driver's imports stay out of the workers' copy of main
    from dataclasses import replace

    from app.sweep.driver import SweepDriver, SweepRequest
    from app.sweep.executors import LocalBackend
    from store.db import init_db

    driver = SweepDriver(SweepRequest("s", "zscore", (sys.argv[1],)), init_db(sys.argv[2]))
    task = replace(driver.tasks_for({})[0], pack_rows=True)
    backend = LocalBackend(1)
    try:
        print(backend.executor.submit(task_then_modules, task).result())
    finally:
        backend.close()
"""


def test_a_local_worker_runs_a_zscore_task_without_sqlalchemy_or_torch(tmp_path, candles) -> None:
    """Only the driver writes, so a worker needs no database library: the pool's preload and a whole
    task (load, run, rows packed for SQLite) import neither SQLAlchemy (~0.25 s of every pool start,
    ~24 MiB per worker) nor torch."""
    script = tmp_path / "driver.py"
    script.write_text(_IMPORTS_DRIVER)
    done = subprocess.run([sys.executable, str(script), str(candles), str(tmp_path / "s.db")], cwd=REPO,
                          env=child_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(True, None, [])"


def test_run_sweep_as_a_workers_main_module_imports_nothing() -> None:
    """A local worker imports the driver's main module again (as ``__mp_main__``): run_sweep.py's
    must not bring the driver's libraries (or any but the standard library) into every worker."""
    code = ("import runpy, sys\n"
            "before = set(sys.modules)\n"
            "runpy.run_path('run_sweep.py', run_name='__mp_main__')\n"
            "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
            "print(sorted(new - set(sys.stdlib_module_names) - {'__mp_main__'}))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=child_env(), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


_PRELOAD_DRIVER = """
import sys


def preloaded():
    return sorted(m for m in ("app.backtest", "feeds.files", "store.rows", "strategies.zscore") if m in sys.modules)


if __name__ == "__main__":
    sys.path.insert(0, sys.argv[1])  # as for `python /path/to/run_sweep.py`: the project is the script's folder
    from app.sweep.executors import LocalBackend

    backend = LocalBackend(1)
    try:
        print(backend.executor.submit(preloaded).result())
    finally:
        backend.close()
"""


def test_the_pool_preloads_a_tasks_imports_from_any_working_directory(tmp_path) -> None:
    """The forkserver imports what a task needs once, before forking workers; run from another
    folder (the project not on the forkserver's path) that import used to fail without a word."""
    script = tmp_path / "driver.py"
    script.write_text(_PRELOAD_DRIVER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, str(script), str(REPO)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['app.backtest', 'feeds.files', 'store.rows', 'strategies.zscore']"
