"""Sweep throughput: configurations per minute with 1 and 2 local workers, and the scaling efficiency.

    python -m bench.sweep_throughput [--bars 150000] [--configs 32] [--score-configs 4] [--repeat 2]

Two grids on SYNTHETIC hourly bars, each with 1 and 2 worker processes, in one run:
- a z-score grid (window × entry_z; cheap runs, so storing each run's rows in the
  driver is a large share of the work), swept end to end as run_sweep.py does by default
  (each trial's metrics, trades and series) and with --store-orders (its orders and fills too);
- a small score-strategy grid (walk-forward with tiny models; compute-bound).
Each is measured twice:
- "execute": the workers' part alone — the same executor and worker function as
  the sweep, results gathered but not stored (pool warmed up first);
- "sweep": what run_sweep.py runs (app/sweep/session.py), end to end into a fresh
  SQLite file: pool start-up, opening the store, checking the data files, one
  transaction per run, the selection statistics.
Speed-up = configs/min with 2 workers ÷ with 1; efficiency = speed-up ÷ 2. The
target (2 workers ≥ 1.7× one) is for the z-score grid's default sweep. Peak memory of each worker
process (ru_maxrss, after many tasks) is compared with a fresh process running one
configuration alone: the bare worker function, and run_backtest.py (which also stores it).
On a machine shared with other work the numbers are noisy: compare within one run. Each
measurement is repeated (--repeat, interleaved 1, 2, 1, 2 workers) and the fastest counts.
The workers' CPU seconds per configuration and the share of the cores they got are
printed too: equal CPU per configuration with 1 and 2 workers means parallelism adds
no work, and a low core share means other processes held the CPU during the run.
"""
from __future__ import annotations

import sys

if __name__ == "__main__":
    # Nothing imported above this line, as in run_sweep.py: the measured workers import this main
    # module again, and must start as run_sweep.py's do (without the driver's libraries).
    if __package__ in (None, ""):  # run as a script: make the repo importable
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.sweep_bench import main

    sys.exit(main())
