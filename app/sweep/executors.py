"""Where a sweep's tasks run: a local process pool or a Dask cluster, both as ``concurrent.futures`` executors.

The driver sees one interface — ``submit(fn, task) -> Future`` — and one
recovery hook, :meth:`Backend.replace`, for a local pool whose worker was killed
(``BrokenProcessPool`` fails every task in flight; the driver makes a new pool
and resubmits them, a bounded number of times). Dask reschedules work of a dead
worker itself (``distributed.scheduler.allowed-failures``), and ``retries`` adds
retries of tasks that raised.

Local workers start with ``forkserver`` (clean processes, no inherited locks or
DB connections) and pin BLAS/OpenMP threads before numpy loads. That has to happen in
the driver's environment, before the pool starts: a worker imports the driver's main
module (and the forkserver preloads it) before any initializer runs, so a main module
that imports numpy would size the BLAS thread pool by the cores, in every worker.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import threading
from contextlib import contextmanager
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any, Iterator

from app.sweep.worker import THREAD_ENV, WORKER_IMPORTS


_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


@contextmanager
def _forkserver_env(threads: int) -> Iterator[None]:
    """The environment a forkserver starts with, restored afterwards: the thread-count variables set
    to ``threads`` (the driver's own BLAS is loaded already and keeps its threads), and this project
    on PYTHONPATH: Python 3.11's forkserver is handed the driver's sys.path but ignores it, so run from
    any other working directory its preload would fail, silently, and every worker would import it
    all again after forking."""
    names = (*THREAD_ENV, "PYTHONPATH")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: str(threads) for name in THREAD_ENV})
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_PROJECT_ROOT, saved["PYTHONPATH"]) if p)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _init_local_worker(threads: int) -> None:
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    driver = multiprocessing.parent_process()  # the driver (not the forkserver this process forked from)
    if driver is not None:
        threading.Thread(target=_exit_with, args=(driver,), name="exit-with-driver", daemon=True).start()


def _exit_with(driver: multiprocessing.process.BaseProcess) -> None:
    """End this worker when the driver is gone (SIGKILL, OOM): its result could never be read, and a
    worker blocked writing a large result into a pipe nobody reads, or waiting for a task nobody sends,
    would otherwise stay forever, keeping the forkserver alive with it. A driver that ends normally has
    shut its workers down first."""
    driver.join()  # returns when the driver's end of the pipe it started this worker through closes
    os._exit(1)


class Backend:
    """An executor plus what the driver needs to know about it."""

    name = "executor"
    can_break = False  # True: a dead worker breaks the whole executor (local pools)

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.executor: Executor = self._make()

    def _make(self) -> Executor:
        raise NotImplementedError

    def replace(self) -> None:
        """Throw the broken executor away and start a fresh one."""
        try:
            self.executor.shutdown(wait=False, cancel_futures=True)
        except Exception:  # a broken pool may fail to shut down cleanly; its processes are gone anyway
            pass
        self.executor = self._make()

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


class LocalBackend(Backend):
    name = "local processes"
    can_break = True

    def __init__(self, workers: int, threads: int = 1) -> None:
        self.threads = threads
        super().__init__(workers)

    def _make(self) -> Executor:
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        if method == "forkserver":  # workers fork from the forkserver: start it with the limit set
            # ...and with what every task imports already imported: workers then start as a fork,
            # and the import runs while the driver still sets the sweep up.
            multiprocessing.set_forkserver_preload(list(WORKER_IMPORTS))
            with _forkserver_env(self.threads):
                multiprocessing.forkserver.ensure_running()  # no-op if running (it keeps its environment)
        else:  # spawned workers copy the driver's environment whenever they start
            os.environ.update({name: str(self.threads) for name in THREAD_ENV})
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context(method),
                                   initializer=_init_local_worker, initargs=(self.threads,))


class DaskBackend(Backend):
    """An existing Dask cluster (``tcp://HOST:PORT``). Its workers must be able to import this project."""

    name = "dask"

    def __init__(self, address: str, retries: int = 2) -> None:
        from distributed import Client

        self.retries = retries
        try:
            self.client = Client(address, timeout="5s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        workers = sum(int(w.get("nthreads", 1)) for w in self.client.scheduler_info()["workers"].values())
        super().__init__(max(1, workers))

    def _make(self) -> Executor:
        return self.client.get_executor(pure=False, retries=self.retries)

    def close(self) -> None:
        try:
            self.executor.shutdown(wait=True)
        finally:
            self.client.close()


def default_workers() -> int:
    """``--workers`` default: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def make_backend(workers: int | None, scheduler: str | None, threads: int = 1, retries: int = 2) -> Backend:
    if scheduler:
        return DaskBackend(scheduler, retries=retries)
    return LocalBackend(workers or default_workers(), threads=threads)


def describe(backend: Backend) -> dict[str, Any]:
    return {"backend": backend.name, "workers": backend.workers}
