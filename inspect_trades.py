#!/usr/bin/env python3
"""Inspect stored runs (backtests and paper runs) from the command line.

    python inspect_trades.py [--db URL] COMMAND ...   (python inspect_trades.py --help for all)

Commands: runs, show RUN, trades RUN, equity RUN, orders RUN, compare RUN RUN...,
report RUN -o FILE.html [--png FILE.png]. RUN is a run id, a unique id prefix or
a run name. The database is opened read-only, so this is safe to run while a
paper trader is writing to it. The pieces live in ``inspect_tools/``.
"""
from __future__ import annotations

import gc
import sys

from cli.inspect_trades import main

if __name__ == "__main__":
    status = main()
    # The interpreter's shutdown collection would walk every object still alive (a report of a
    # 1M-bar run: ~0.3 s); the process is ending and holds no cycles whose cleanup matters.
    gc.freeze()
    sys.exit(status)
