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

if __name__ == "__main__":
    # One short-lived command: reference counting frees nearly all it makes, and the few cycles
    # (plotly figures, SQLAlchemy internals) go with the process. Cyclic collections would only
    # walk the imported modules and a big report's ~10^5 objects again and again (~0.1-0.2 s).
    gc.disable()
    from cli.inspect_trades import main

    status = main()
    gc.freeze()  # nor walk them all once more in the interpreter's shutdown collection (~0.3 s)
    sys.exit(status)
