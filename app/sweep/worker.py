"""The function a sweep worker runs: load the data itself, run one backtest, return a small result.

Runs in a local worker process or on a Dask worker. The task carries a file
path, never bars: each worker process reads a file once and keeps it (a small
per-process cache), so no process holds more than the data it runs on. torch and
the BLAS libraries get an explicit thread count (1 by default) so N workers on
N cores do not oversubscribe them. Any error of the configuration itself comes
back as a failed result; only a dying process escapes, and the driver retries it.
"""
from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from app.sweep.plan import SweepTask

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS")
# What a task imports (preloaded by the local pool's forkserver; the heavy part of a worker's start).
WORKER_IMPORTS = ("app.sweep.worker", "app.backtest", "app.registry", "engine.broker", "feeds.files",
                  "store.rows", "strategies.zscore")
_CACHE: dict[str, Any] = {}  # data path → BarSeries, per worker process
_CACHE_LIMIT = 4


@dataclass
class TaskResult:
    """What comes back to the driver: metrics, and the run's rows ready to insert (plain values, small pickle)."""

    config_hash: str
    ok: bool
    error: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # every strategy parameter, resolved
    config: dict[str, Any] = field(default_factory=dict)  # the strategy's frozen config
    metrics: dict[str, Any] = field(default_factory=dict)
    stored: Any = None  # store.rows.PreparedRun: the run's rows, built here so the driver only inserts
    timeframe_ms: int | None = None
    data_source: str | None = None
    seconds: float = 0.0  # wall time in the worker
    cpu_seconds: float = 0.0  # CPU time of the worker process on this task
    peak_rss_mb: float = 0.0
    pid: int = 0


def limit_threads(threads: int = 1) -> None:
    """Pin BLAS/OpenMP (effective before numpy/torch load, i.e. in a fresh worker) and torch (any time)."""
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    if "torch" in sys.modules:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def run_task(task: SweepTask) -> TaskResult:
    """Run one configuration; configuration errors become ``ok=False`` results with the message."""
    from domain.heap import release_free_heap

    release_free_heap()  # the previous task's rows are gone: its heap goes back, so peaks do not creep up
    started, cpu_started = time.perf_counter(), time.process_time()
    limit_threads(task.threads)
    try:
        result = _run(task)
    except Exception as exc:  # a bad configuration fails alone; the driver stores the message
        result = TaskResult(task.config_hash, False, error=f"{type(exc).__name__}: {exc}")
    result.seconds = time.perf_counter() - started
    result.cpu_seconds = time.process_time() - cpu_started
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    result.pid = os.getpid()
    return result


def _run(task: SweepTask) -> TaskResult:
    from app.backtest import BacktestRequest, execute
    from app.registry import config_dict
    from engine.broker import BrokerConfig

    series = load_cached(task.data_path, task.data_hash)
    trade_from = None
    if task.select_until_ms is not None:
        if task.role == "trial":  # choose on bars before the split only: later bars are never loaded
            series = series.between(None, task.select_until_ms)
        else:  # held out: bars before the split only warm the strategy up
            trade_from = task.select_until_ms
    if len(series) < 2:
        raise ValueError(f"{task.data_path}: fewer than 2 bars on this side of --select-until")
    params = dict(task.params)
    if task.seed is not None:
        params["seed"] = task.seed
    request = BacktestRequest(task.strategy, params, BrokerConfig(**task.broker), trade_from_ms=trade_from,
                              with_report=False)
    outcome = execute(request, series)
    limit_threads(task.threads)  # the strategy may have imported torch just now; later tasks reuse it
    from store.rows import new_run_id, prepare_backtest

    r = outcome.result
    stored = prepare_backtest(new_run_id(), r.events, r.order_status, outcome.metrics, outcome.report,
                              list(outcome.spec.model_versions(outcome.strategy)), r.start_ts, r.end_ts,
                              with_orders=task.store_orders)
    if task.pack_rows:
        stored = stored.packed_rows()
    return TaskResult(
        task.config_hash, True, params=outcome.params, config=config_dict(outcome.strategy), metrics=outcome.metrics,
        stored=stored, timeframe_ms=series.timeframe_ms, data_source=series.source)


def load_cached(path: str, expected_hash: str) -> Any:
    """The file's bars, read once per process; refuses a file whose content changed since the sweep began."""
    from feeds.files import load_bars

    series = _CACHE.get(path)
    if series is None:
        series = load_bars(path)
        if len(_CACHE) >= _CACHE_LIMIT:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[path] = series
    if series.sha256 != expected_hash:
        raise ValueError(f"{path}: content changed since the sweep started (sha256 {series.sha256[:12]}…, "
                         f"expected {expected_hash[:12]}…)")
    return series
