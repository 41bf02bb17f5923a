"""What ``python -m bench.sweep_throughput`` runs (see that module for what it measures).

Kept out of the main module: each local worker imports the main module again, and this
one imports the sweep driver (SQLAlchemy, rich), which run_sweep.py's workers never load.
A heavy main module would make every worker of the measured pools slower to start than
a user's.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import wait
from pathlib import Path

from rich.console import Console
from rich.table import Table

from app.sweep.driver import SweepDriver, SweepRequest
from app.sweep.executors import LocalBackend
from app.sweep.session import run_sweep
from app.sweep.worker import limit_threads, run_task
from feeds.synthetic import synthetic_bars
from store.db import init_db

TARGET = 1.7
SCORE_FIXED = {"train_days": 60.0, "retrain_days": 30.0, "max_steps": 150, "warm_start_steps": 40, "hidden": 32,
               "sample_check_samples": 0}


def grids(configs: int, score_configs: int) -> dict[str, tuple[str, dict, dict]]:
    windows = [20, 30, 40, 50, 60, 80, 100, 120]
    zs = [1.5, 2.0, 2.5, 3.0]
    n_w = max(1, configs // len(zs))
    score_q = [0.95, 0.97, 0.98, 0.99, 0.995, 0.999][:max(1, score_configs)]
    return {"zscore": ("zscore", {"window": windows[:n_w], "entry_z": zs}, {}),
            "score": ("score", {"threshold_quantile": score_q}, SCORE_FIXED)}


def single_run_peak(data: Path, strategy: str, point: dict, fixed: dict, db_dir: Path) -> float:
    """Peak RSS (MiB) of a fresh process that runs one configuration alone (the reference)."""
    code = ("import resource, sys; sys.path.insert(0, %r)\n"
            "from app.sweep.driver import SweepDriver, SweepRequest\n"
            "from app.sweep.worker import run_task\n"
            "from store.db import init_db\n"
            "d = SweepDriver(SweepRequest('x', %r, (%r,), fixed=%r), init_db(%r))\n"
            "r = run_task(d.tasks_for(%r)[0]); assert r.ok, r.error\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)\n"
            % (str(Path(__file__).resolve().parents[1]), strategy, str(data), fixed,
               str(db_dir / "ref.db"), point))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def run_backtest_peak(data: Path, strategy: str, point: dict, fixed: dict, db_dir: Path) -> float:
    """Peak RSS (MiB) of ``run_backtest.py`` running the same configuration alone (storing it, as a user would)."""
    repo = Path(__file__).resolve().parents[1]
    args = [sys.executable, str(repo / "run_backtest.py"), "--data", str(data), "--strategy", strategy, "--json",
            "--db", str(db_dir / f"alone-{strategy}.db")]
    for name, value in {**fixed, **point}.items():
        args += ["--param", f"{name}={value}"]
    code = ("import resource, subprocess, sys\n"
            "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0)\n")
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def execute_only(driver: SweepDriver, points: list[dict], workers: int) -> tuple[float, float, float]:
    """Seconds to run every task on a warmed pool, the largest worker peak RSS (MiB), and worker CPU seconds."""
    tasks = [t for p in points for t in driver.tasks_for(p)]
    backend = LocalBackend(workers)
    try:
        wait([backend.executor.submit(limit_threads, 1) for _ in range(workers * 2)])  # start and import
        wait([backend.executor.submit(run_task, tasks[0]) for _ in range(workers)])  # first-use imports, data cache
        t0 = time.perf_counter()
        results = [f.result() for f in [backend.executor.submit(run_task, t) for t in tasks]]
        seconds = time.perf_counter() - t0
    finally:
        backend.close()
    bad = [r.error for r in results if not r.ok]
    if bad:
        raise SystemExit(f"a configuration failed: {bad[0]}")
    return seconds, max(r.peak_rss_mb for r in results), sum(r.cpu_seconds for r in results)


def end_to_end(request: SweepRequest, db_path: Path, workers: int) -> float:
    """Seconds of the sweep as run_sweep.py runs it (app/sweep/session.py), from starting the pool and
    opening a fresh store to the summary."""
    t0 = time.perf_counter()
    summary = run_sweep(request, str(db_path), workers=workers)
    seconds = time.perf_counter() - t0
    if any(r["status"] != "completed" for r in summary["runs"]):
        raise SystemExit("a configuration failed in the end-to-end sweep")
    return seconds


def _secs(values: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def main(argv: list[str] | None = None) -> int:
    from bench import sweep_throughput  # its docstring is the usage (importing it runs nothing)

    p = argparse.ArgumentParser(prog="python -m bench.sweep_throughput", description=sweep_throughput.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bars", type=int, default=150_000, help="bars of the z-score data (default 150000)")
    p.add_argument("--configs", type=int, default=32,
                   help="z-score configurations (multiple of 4, at most 32; default 32: a sweep long enough that "
                        "starting the pool is not a large share of it)")
    p.add_argument("--score-bars", type=int, default=4_000, help="bars of the score-strategy data (default 4000)")
    p.add_argument("--score-configs", type=int, default=4, help="score-strategy configurations (default 4)")
    p.add_argument("--repeat", type=int, default=2,
                   help="measure each worker count this many times, interleaved; the fastest counts (default 2)")
    args = p.parse_args(argv)
    console = Console()
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        root = Path(tmp)
        files = {"zscore": root / "zscore.csv.gz", "score": root / "score.csv.gz"}
        synthetic_bars(args.bars, seed=1).to_frame().to_csv(files["zscore"], index=False)
        synthetic_bars(args.score_bars, seed=2).to_frame().to_csv(files["score"], index=False)
        table = Table(title="Sweep throughput (SYNTHETIC bars; shared CPU → noisy)")
        for col in ("grid", "configs", "mode", "1 worker cfg/min", "2 workers cfg/min", "speed-up", "efficiency",
                    "worker peak RSS vs one run alone (worker fn / run_backtest.py)"):
            table.add_column(col)
        verdicts = []
        for label, (strategy, grid, fixed) in grids(args.configs, args.score_configs).items():
            request = SweepRequest(name=label, strategy=strategy, data=(str(files[label]),), grid=grid, fixed=fixed)
            driver = SweepDriver(request, init_db(str(root / f"plan-{label}.db")))
            points = [dict(zip(grid, combo)) for combo in __import__("itertools").product(*grid.values())]
            n = len(points)
            reference = single_run_peak(files[label], strategy, points[0], fixed, root)
            cli_reference = run_backtest_peak(files[label], strategy, points[0], fixed, root)
            # Interleaved repeats, the fastest counting (as in store_throughput.py): a shared host's speed
            # drifts by tens of percent within a minute, which one run of each would read as (anti-)scaling.
            exec_runs: dict[int, list[tuple[float, float, float]]] = {1: [], 2: []}
            # The default sweep stores each trial's trades and series; the z-score grid is also swept with
            # --store-orders (every order and fill too: ~4x the rows for the one writer).
            e2e_modes = {"sweep": False, **({"sweep --store-orders": True} if label == "zscore" else {})}
            e2e_runs: dict[tuple[str, int], list[float]] = {(m, w): [] for m in e2e_modes for w in (1, 2)}
            for attempt in range(args.repeat):
                for w in (1, 2):
                    exec_runs[w].append(execute_only(driver, points, w))
                for k, (mode, store_orders) in enumerate(e2e_modes.items()):
                    for w in (1, 2):
                        e2e_runs[mode, w].append(end_to_end(SweepRequest(
                            name=f"{label}-{k}-{w}-{attempt}", strategy=strategy, data=(str(files[label]),),
                            grid=grid, fixed=fixed, store_orders=store_orders),
                            root / f"{label}-{k}-{w}-{attempt}.db", w))
            exec_s = {w: min(runs, key=lambda r: r[0]) for w, runs in exec_runs.items()}
            if args.repeat > 1:
                for mode in e2e_modes:
                    console.print(f"[dim]{label}, {mode}: end-to-end seconds per attempt, 1 worker "
                                  f"{_secs(e2e_runs[mode, 1])}, 2 workers {_secs(e2e_runs[mode, 2])}[/dim]")
            peak = max(r[1] for runs in exec_runs.values() for r in runs)  # the largest of every attempt
            for w, (secs, _, cpu) in exec_s.items():
                console.print(f"[dim]{label}, {w} worker(s): {cpu / n:.2f} CPU s per config in the workers; they got "
                              f"{100 * cpu / (secs * w):.0f} % of {w} core(s) while running[/dim]")
            timings = {"execute": {w: s for w, (s, _, _) in exec_s.items()},
                       **{mode: {w: min(e2e_runs[mode, w]) for w in (1, 2)} for mode in e2e_modes}}
            for mode, secs in timings.items():
                rate = {w: 60.0 * n / secs[w] for w in (1, 2)}
                speed = rate[2] / rate[1]
                table.add_row(label, str(n), mode, f"{rate[1]:.1f}", f"{rate[2]:.1f}", f"{speed:.2f}×",
                              f"{100 * speed / 2:.0f} %",
                              f"{peak:.0f} vs {reference:.0f} / {cli_reference:.0f} MiB" if mode == "execute" else "")
                if label == "zscore":
                    verdicts.append((mode, speed))
            console.print(f"[dim]{label}: {n} configs; one run alone peaks at {reference:.0f} MiB (the worker "
                          f"function in a fresh process) and {cli_reference:.0f} MiB (run_backtest.py); workers "
                          f"peaked at {peak:.0f} MiB[/dim]")
        console.print(table)
        for mode, speed in verdicts:
            ok = speed >= TARGET
            console.print(f"z-score grid, {mode}: 2 workers = {speed:.2f}× one worker "
                          f"({'meets' if ok else 'below'} the {TARGET}× target)")
    return 0

