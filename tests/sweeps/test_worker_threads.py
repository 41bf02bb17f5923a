"""Local sweep workers run with the BLAS/OpenMP thread count they are given (1 by default), even when
the driver's main module imported numpy: a worker imports that module before any initializer runs,
so the limit must already be in the environment the pool starts with (else N workers × N BLAS threads
on N cores)."""
from __future__ import annotations

import subprocess
import sys

from app.sweep.worker import THREAD_ENV
from tests.sweeps.conftest import REPO, child_env

_DRIVER = """
import numpy  # imported by the main module, as run_sweep.py and a user's script do

def worker_threads():
    import numpy as np
    np.ones((64, 64)) @ np.ones((64, 64))  # BLAS in use
    return [line.split()[1] for line in open("/proc/self/status") if line.startswith("Threads:")][0]

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
    assert done.stdout.strip() == "['1']"  # one thread: the worker's own, no BLAS pool beside it
