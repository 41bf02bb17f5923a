#!/usr/bin/env python3
"""Run one strategy over a parameter grid or an Optuna search, data files and seeds, in parallel.

    python run_sweep.py --data FILE [FILE ...] --strategy NAME --grid PARAM=V1,V2 ... [--workers N] [--json]

``python run_sweep.py --help`` lists every flag, with examples. The command line lives
in cli/run_sweep.py.
"""
from __future__ import annotations

import sys

if __name__ == "__main__":
    # Nothing is imported above this line on purpose: each local worker process imports this
    # main module again (multiprocessing's rule for spawned and forkserver children), and a
    # worker needs none of the driver's libraries (SQLAlchemy, rich).
    from cli.run_sweep import main

    sys.exit(main())
