"""The sweep driver: plans tasks, keeps the workers busy, stores each finished run, and judges the best.

Only this process writes to the database: one transaction per finished run
(run row, results and its link to the sweep together), so any number of workers
never contend for SQLite's lock or open connections of their own. A killed
driver leaves only whole runs behind; restarting the sweep with the same name
skips every configuration whose hash is stored (failed ones are retried).
A killed worker process breaks a local pool: the driver starts a new pool and
resubmits the unfinished tasks, at most ``max_attempts`` times each.
"""
from __future__ import annotations

import json
import math
from collections import deque
from itertools import chain
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from analysis.selection import block_moments, deflated_sharpe, matrix_moments, overfit_from_moments, split_count
from app.registry import get_spec
from app.sweep.executors import Backend
from app.sweep.plan import BROKER_NAMES, SearchDim, SweepTask, config_hash, grid_points
from app.sweep.planners import GridPlanner, OptunaPlanner
from app.sweep.worker import TaskResult, run_task
from engine.metrics import bars_per_year
from feeds.files import file_sha256
from domain.times import ms_to_text, timeframe_name, timeframe_ms
from feeds.validation import DataError
from store.repository import RunSpec, load_equity
from store.sweeps import SweepLink, finish_sweep, open_sweep, save_sweep_run, stored_configs, sweep_runs
from strategies.params import ParamError


@dataclass(frozen=True)
class SearchSpec:
    kind: str  # "optuna"
    trials: int
    dims: tuple[SearchDim, ...]
    seed: int = 0  # the sampler's seed


@dataclass(frozen=True)
class SweepRequest:
    """A whole sweep. ``grid`` and ``fixed`` use parameter names (strategy's and ``fee_bps``/``slippage_bps``)."""

    name: str
    strategy: str
    data: tuple[str, ...]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    search: SearchSpec | None = None
    seeds: tuple[int, ...] | None = None
    cash_quote: float = 100_000.0
    fee_bps: float = 10.0
    maker_fee_bps: float | None = None  # resting limit fills; None: the taker fee (fee_bps)
    slippage_bps: float = 0.0
    long_only: bool = False
    select_until_ms: int | None = None
    metric: str = "sharpe"
    threads: int = 1
    max_attempts: int = 3
    # Trials keep their metrics, trades, per-bar series and model versions; their orders and fills (~3/4 of
    # a run's rows, and of the one writer's work) only with store_orders. The out-of-sample run of the best
    # (--select-until) is always stored in full.
    store_orders: bool = False


class Progress(Protocol):
    def start(self, total: int, done: int, failed: int) -> None: ...
    def update(self, done: int, running: int, failed: int, best: float | None) -> None: ...
    def add_total(self, n: int) -> None: ...


class NoProgress:
    def start(self, total: int, done: int, failed: int) -> None: ...
    def update(self, done: int, running: int, failed: int, best: float | None) -> None: ...
    def add_total(self, n: int) -> None: ...


class SweepDriver:
    def __init__(self, request: SweepRequest, db: Any, backend: Backend | None = None,
                 progress: Progress | None = None) -> None:
        """Checks the request's names and values and hashes its data files; ``db`` (a SQLAlchemy engine)
        may be given later, before :meth:`run` (app/sweep/session.py checks the files first)."""
        self.req = request
        self.db = db
        self.backend = backend
        self.progress = progress or NoProgress()
        self.spec = get_spec(request.strategy)
        self.names = set(self.spec.param_names())
        self.data_hashes = ({path: _hash_file(path) for path in request.data} if request.select_until_ms is None
                            else {path: _check_split(path, request.select_until_ms) for path in request.data})
        self._check_request()
        self.sweep_id = ""
        self.stored: dict[str, str] = {}
        self.stored_values: dict[str, float | None] = {}
        self.done = self.failed = 0
        self.best: float | None = None

    # ---- planning ------------------------------------------------------------------------------
    def _check_request(self) -> None:
        req = self.req
        if req.seeds is not None and "seed" not in self.names:
            raise ParamError(f"--seeds: strategy {req.strategy!r} has no seed parameter (it is deterministic)")
        swept = set(req.grid) | {d.name for d in (req.search.dims if req.search else ())}
        if req.seeds is not None and "seed" in swept | set(req.fixed):
            raise ParamError("seed is set by --seeds; do not also put it in --grid/--space/--param")
        overlap = swept & set(req.fixed)
        if overlap:
            raise ParamError(f"{', '.join(sorted(overlap))} both swept and fixed with --param")
        for name in set(req.grid) | set(req.fixed):
            if name not in self.names and name not in BROKER_NAMES:
                raise ParamError(f"unknown parameter {name!r}; valid: {', '.join(sorted(self.names | set(BROKER_NAMES)))}")
        if req.metric not in _METRICS:
            raise ParamError(f"--metric {req.metric!r}: choose one of {', '.join(_METRICS)}")
        for point in grid_points(req.grid)[:1] or [{}]:
            self.tasks_for(point, role="trial")  # type errors in values surface now, before anything runs

    def tasks_for(self, point: dict[str, Any], role: str = "trial") -> list[SweepTask]:
        """One task per data file and seed for a point of swept values."""
        req = self.req
        values = {**req.fixed, **point}
        broker = {"cash_quote": req.cash_quote, "fee_bps": float(values.get("fee_bps", req.fee_bps)),
                  "slippage_bps": float(values.get("slippage_bps", req.slippage_bps)), "long_only": req.long_only}
        if req.maker_fee_bps is not None:
            broker["maker_fee_bps"] = req.maker_fee_bps
        strategy_params = {k: v for k, v in values.items() if k not in BROKER_NAMES}
        if req.long_only and "long_only" in self.names:
            strategy_params.setdefault("long_only", True)
        tasks = []
        for path in req.data:
            for seed in (req.seeds or (None,)):
                given = dict(strategy_params) if seed is None else {**strategy_params, "seed": seed}
                resolved = self.spec.resolve(given)
                h = config_hash(req.strategy, resolved, broker, self.data_hashes[path], seed, req.select_until_ms,
                                role)
                tasks.append(SweepTask(h, req.strategy, self.spec_params(strategy_params), broker, path,
                                       self.data_hashes[path], seed, role, req.select_until_ms, req.threads,
                                       store_orders=req.store_orders or role == "holdout", swept=dict(point)))
        return tasks

    def spec_params(self, params: dict[str, Any]) -> dict[str, Any]:
        return {k: self.spec.resolve(params)[k] for k in params}  # typed values, given names only

    def spec_json(self) -> dict[str, Any]:
        req = self.req
        search = None if req.search is None else {"kind": req.search.kind, "trials": req.search.trials,
                                                   "space": [asdict(d) for d in req.search.dims]}
        return {"grid": req.grid, "fixed": req.fixed, "search": search, "seeds": list(req.seeds or []),
                "data": [{"path": p, "sha256": h} for p, h in self.data_hashes.items()],
                "broker": {"cash_quote": req.cash_quote, "fee_bps": req.fee_bps, "maker_fee_bps": req.maker_fee_bps,
                           "slippage_bps": req.slippage_bps, "long_only": req.long_only},
                "select_until": req.select_until_ms, "metric": req.metric, "store_orders": req.store_orders}

    # ---- running -----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run (or resume) the sweep; returns the summary that ``run_sweep.py --json`` prints."""
        self.sweep_id, _ = open_sweep(self.db, self.req.name, self.req.strategy, json.loads(json.dumps(
            self.spec_json(), default=list)))
        try:
            self._load_stored()
            planner = self._planner()
            self.progress.start(planner.total_tasks, 0, 0)
            self._drive(planner)
            if self.req.select_until_ms is not None:
                self._run_holdout()
            summary = summarise(self.db, self.sweep_id, self.req)
        except BaseException:
            finish_sweep(self.db, self.sweep_id, "interrupted")
            raise
        finish_sweep(self.db, self.sweep_id, "completed", {k: v for k, v in summary.items() if k != "runs"})
        return summary

    def _load_stored(self) -> None:
        self.stored = stored_configs(self.db, self.sweep_id)
        for row in sweep_runs(self.db, self.sweep_id, role="trial"):
            self.stored_values[row["config_hash"]] = _metric(row["metrics"], self.req.metric) \
                if row["status"] == "completed" else None

    def _planner(self) -> GridPlanner | OptunaPlanner:
        req = self.req
        if req.search is None:
            return GridPlanner(grid_points(req.grid), self.tasks_for)
        per_point = len(req.data) * len(req.seeds or (None,))
        points: dict[str, tuple[dict[str, Any], list[float | None]]] = {}
        for row in sweep_runs(self.db, self.sweep_id, role="trial"):
            swept = row["params"] or {}
            key = json.dumps(swept, sort_keys=True)
            points.setdefault(key, (swept, []))[1].append(self.stored_values.get(row["config_hash"]))
        stored_points = []
        for swept, values in points.values():
            ok = [v for v in values if v is not None]
            stored_points.append((swept, sum(ok) / len(ok) if ok else None))
        return OptunaPlanner(list(req.search.dims), req.search.trials, self.tasks_for, per_point, stored_points,
                             seed=req.search.seed)

    def _drive(self, planner: GridPlanner | OptunaPlanner) -> None:
        cap = max(1, self.backend.workers * 2)
        # A SQLite store takes each run's rows as one image the worker packed (store/batch.py PackedRows):
        # the one writer then copies them with one INSERT … SELECT a table (~60 % less driver CPU per
        # row), and the worker's packing costs about what pickling the rows would.
        pack_rows = self.db.dialect.name == "sqlite"
        inflight: dict[Future, SweepTask] = {}
        retry: deque[SweepTask] = deque()
        attempts: dict[str, int] = {}
        while True:
            while len(inflight) < cap:
                batch = [retry.popleft()] if retry else planner.next_tasks(1)
                if not batch:
                    break
                task = batch[0]
                if self.stored.get(task.config_hash) == "completed":  # resumed: stored before
                    self.done += 1
                    self._note_best(self.stored_values.get(task.config_hash))
                    planner.on_result(task, self.stored_values.get(task.config_hash))
                    self._report(len(inflight))
                    continue
                inflight[self.backend.executor.submit(run_task, replace(task, pack_rows=pack_rows))] = task
            self._report(len(inflight))
            if not inflight:
                if planner.exhausted() and not retry:
                    return
                continue
            finished, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            broken = False
            for fut in finished:
                task = inflight.pop(fut)
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    broken = True
                    self._requeue(task, attempts, retry, planner)
                    continue
                except Exception as exc:  # e.g. Dask's KilledWorker after its own retries
                    result = TaskResult(task.config_hash, False, error=f"worker lost: {type(exc).__name__}: {exc}")
                self._store(task, result, planner)
            if broken and self.backend.can_break:
                for fut, task in list(inflight.items()):  # every task of the broken pool is lost
                    self._requeue(task, attempts, retry, planner)
                inflight.clear()
                self.backend.replace()

    def _requeue(self, task: SweepTask, attempts: dict[str, int], retry: deque[SweepTask],
                 planner: GridPlanner | OptunaPlanner) -> None:
        attempts[task.config_hash] = attempts.get(task.config_hash, 0) + 1
        if attempts[task.config_hash] < self.req.max_attempts:
            retry.append(task)
        else:
            self._store(task, TaskResult(task.config_hash, False, error=f"worker process died "
                                                                         f"{attempts[task.config_hash]} times"), planner)

    def _store(self, task: SweepTask, result: TaskResult, planner: GridPlanner | OptunaPlanner) -> None:
        save_result(self.db, self.sweep_id, task, result)
        value = _metric(result.metrics, self.req.metric) if result.ok else None
        self.stored[task.config_hash] = "completed" if result.ok else "failed"
        self.stored_values[task.config_hash] = value
        if result.ok:
            self.done += 1
            if task.role == "trial":
                self._note_best(value)
        else:
            self.failed += 1
        planner.on_result(task, value)

    def _note_best(self, value: float | None) -> None:
        if value is not None and (self.best is None or value > self.best):
            self.best = value

    def _report(self, running: int) -> None:
        self.progress.update(self.done, running, self.failed, self.best)

    def _run_holdout(self) -> None:
        """The best configuration chosen before ``select_until``, measured on the bars after it."""
        best = best_run(sweep_runs(self.db, self.sweep_id, role="trial"), self.req.metric)
        if best is None:
            return
        swept = dict(best["params"] or {})
        seed = best["seed"]
        task = next(t for t in self.tasks_for(swept, role="holdout")
                    if t.data_path == best["data_path"] and t.seed == seed)
        self.stored.update(stored_configs(self.db, self.sweep_id, role="holdout"))
        self.progress.add_total(1)
        self._drive(GridPlanner([], lambda p: []) if self.stored.get(task.config_hash) == "completed"
                    else _OneTask(task))


class _OneTask(GridPlanner):
    def __init__(self, task: SweepTask) -> None:
        self.queue = deque([task])
        self.total_tasks = 1


_METRICS = ("sharpe", "sortino", "calmar", "total_return", "cagr", "final_equity", "profit_factor")


def _metric(metrics: dict[str, Any] | None, name: str) -> float | None:
    value = (metrics or {}).get(name)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _hash_file(path: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: file not found" if not p.exists() else f"{path}: not a file")
    return file_sha256(p)


def _check_split(path: str, until_ms: int) -> str:
    """The file's hash, after refusing a ``--select-until`` that leaves either side without bars.

    Why the driver reads the bars here (once per file, only with --select-until): otherwise every
    task finds the problem itself, and the sweep ends with all its runs failed instead of one line."""
    from feeds.files import load_bars

    series = load_bars(path)
    ts = series.ts_ms
    span = f"its bars run {ms_to_text(int(ts[0]))} → {ms_to_text(int(ts[-1]))}"
    if int(np.searchsorted(ts, until_ms, side="left")) < 2:
        raise DataError(f"--select-until {ms_to_text(until_ms)}: fewer than 2 bars of {path} before it to choose on "
                        f"({span})")
    if ts[-1] < until_ms:
        raise DataError(f"--select-until {ms_to_text(until_ms)}: no bar of {path} at or after it to judge the "
                        f"choice on ({span})")
    return series.sha256


def save_result(db: Any, sweep_id: str, task: SweepTask, result: TaskResult) -> str:
    """The one place a sweep writes a run (one transaction; the store's own run-saving path)."""
    params = {"strategy": task.strategy, "engine": "native", **task.broker, "cash": task.broker["cash_quote"],
              "strategy_params": result.params or task.params, "config": result.config, "seed": task.seed,
              "select_until": task.select_until_ms, "role": task.role, "sweep_id": sweep_id,
              "timeframe_ms": result.timeframe_ms, "orders_stored": task.store_orders}
    spec = RunSpec(mode="backtest", strategy=task.strategy, initial_cash=task.broker["cash_quote"],
                   params=json.loads(json.dumps(params, default=list)), symbol="BTC/USDT",
                   timeframe=timeframe_name(result.timeframe_ms) if result.timeframe_ms else None,
                   data_source=result.data_source or task.data_path, data_hash=task.data_hash,
                   trade_from_ts=task.select_until_ms if task.role == "holdout" else None)
    link = SweepLink(sweep_id, task.role, task.config_hash, json.loads(json.dumps(task.swept, default=list)),
                     task.data_path, task.data_hash, task.seed)
    return save_sweep_run(db, spec, link, result.stored if result.ok else None, error=result.error)


# ---- judging the result ----------------------------------------------------------------------------
def best_run(rows: list[dict[str, Any]], metric: str) -> dict[str, Any] | None:
    scored = [(v, i, r) for i, r in enumerate(rows) if r["status"] == "completed"
              and (v := _metric(r["metrics"], metric)) is not None]
    if not scored:
        return None
    return max(scored, key=lambda x: (x[0], -x[1]))[2]


def run_entry(row: dict[str, Any]) -> dict[str, Any]:
    entry = {"run_id": row["id"], "params": row["params"] or {}, "data": row["data_path"], "seed": row["seed"],
             "metrics": row["metrics"] or {}, "status": row["status"]}
    if row["error"]:
        entry["error"] = row["error"]
    return entry


def summarise(db: Any, sweep_id: str, req: SweepRequest) -> dict[str, Any]:
    """The sweep as JSON: every run, the best, its Deflated Sharpe Ratio and the PBO of its track."""
    trials = sweep_runs(db, sweep_id, role="trial")
    best = best_run(trials, req.metric)
    out: dict[str, Any] = {"sweep": req.name, "strategy": req.strategy, "metric": req.metric,
                           "runs": [run_entry(r) for r in trials], "best": None, "deflated_sharpe": None,
                           "pbo": None, "selection": {}}
    if best is None:
        return out
    out["best"] = run_entry(best)
    stats = selection_stats(db, trials, best)
    out.update(deflated_sharpe=stats.pop("deflated_sharpe"), pbo=stats.pop("pbo"), selection=stats)
    if req.select_until_ms is not None:
        out["selection"]["select_until_ms"] = req.select_until_ms
        held = [r for r in sweep_runs(db, sweep_id, role="holdout") if r["data_path"] == best["data_path"]
                and r["seed"] == best["seed"] and (r["params"] or {}) == (best["params"] or {})]
        if held:
            out["best"]["out_of_sample"] = run_entry(held[-1])
    return out


def selection_stats(db: Any, trials: list[dict[str, Any]], best: dict[str, Any]) -> dict[str, Any]:
    """DSR over all completed trials; PBO over the configurations run on the best run's data file and seed."""
    done = [r for r in trials if r["status"] == "completed"]
    per_period = []
    for r in done:
        s = (r["metrics"] or {}).get("sharpe")
        bpy = bars_per_year(timeframe_ms(r["timeframe"])) if r["timeframe"] else 1.0
        per_period.append(float(s) / math.sqrt(bpy) if isinstance(s, (int, float)) else 0.0)
    track = [r for r in done if r["data_path"] == best["data_path"] and r["seed"] == best["seed"]]
    best_returns, moments = _track_returns(db, track, best["id"])
    dsr = deflated_sharpe(best_returns, np.asarray(per_period))
    out: dict[str, Any] = {"deflated_sharpe": _finite(dsr.dsr), "pbo": None, "n_trials": dsr.n_trials,
                           "best_sharpe_per_bar": _finite(dsr.sharpe), "expected_max_sharpe_per_bar": _finite(dsr.sr0),
                           "track_length": dsr.track_length, "skewness": _finite(dsr.skewness),
                           "kurtosis": _finite(dsr.kurtosis), "pbo_configs": len(track)}
    if moments is not None:
        pbo = overfit_from_moments(*moments)
        out.update(pbo=pbo.pbo, pbo_splits=pbo.n_splits, pbo_combinations=pbo.n_combinations)
    return out


def _track_returns(db: Any, track: list[dict[str, Any]], best_id: str
                   ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, int] | None]:
    """The best run's bar returns, and the CSCV block moments (S × N sums, sums of squares, rows per
    block) of every run of its track (which holds the best run) over the bars all of them measured
    (None: too few runs or bars).

    Usually every run measured the same bars: then one run's curve is in memory at a time (a sweep of
    500 runs on 1M bars would otherwise hold 4 GB of returns). Runs over different bars are aligned
    on the bars they share first, with every curve loaded.
    """
    curves = (load_equity(db, r["id"]) for r in track)
    first = next(curves)
    ts0, t = first[0], len(first[0]) - 1
    s = split_count(t) if len(track) >= 2 and t >= 8 else 0
    sums, squares, best = [], [], np.zeros(0)
    for r, (ts, eq) in zip(track, chain([first], curves)):
        if not np.array_equal(ts, ts0):
            return _aligned_track(db, track, best_id)
        if r["id"] == best_id or s:
            returns = _bar_returns(eq)
            if r["id"] == best_id:
                best = returns
            if s:
                total, square = block_moments(returns, s)
                sums.append(total)
                squares.append(square)
    return best, (np.array(sums).T, np.array(squares).T, t // s) if s else None


def _aligned_track(db: Any, track: list[dict[str, Any]], best_id: str
                   ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, int] | None]:
    curves = [tuple(np.asarray(c) for c in load_equity(db, r["id"])) for r in track]
    at = [r["id"] for r in track].index(best_id)
    returns = aligned_returns(curves)
    if returns is None:
        return _bar_returns(curves[at][1]), None
    if returns.shape[1] < 2 or returns.shape[0] < 8:
        return returns[:, at], None
    return returns[:, at], matrix_moments(returns)


def _bar_returns(equity: np.ndarray) -> np.ndarray:
    """Bar-to-bar returns of an equity curve (empty for fewer than 2 marks)."""
    returns = np.divide(equity[1:], equity[:-1])
    returns -= 1.0
    return returns


def aligned_returns(curves: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray | None:
    """T × N bar returns of (times, equity) curves over the times all of them have (a transposed view of
    one row per curve); None under 3 such times."""
    common = curves[0][0]
    if all(np.array_equal(ts, common) for ts, _ in curves[1:]):  # the usual case: one data file, one span
        columns = [eq for _, eq in curves]
    else:
        for ts, _ in curves[1:]:
            common = np.intersect1d(common, ts, assume_unique=True)
        columns = [eq[np.searchsorted(ts, common)] for ts, eq in curves]
    if len(common) < 3:
        return None
    # Each curve's returns as a row of one N × T array, returned transposed (a view): a curve's
    # returns are written once, in place, and PBO and the DSR read the rows as they lie.
    returns = np.empty((len(columns), len(common) - 1))
    for row, column in zip(returns, columns):
        eq = np.asarray(column, dtype=float)
        np.divide(eq[1:], eq[:-1], out=row)
    returns -= 1.0
    return returns.T


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None
