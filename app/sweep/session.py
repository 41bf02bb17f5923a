"""One sweep from request to summary: the workers, the store and the driver, started in the order that
overlaps their start-up. ``run_sweep.py`` and ``app.api.sweep`` both run sweeps through here.

The local pool starts first: its forkserver imports what a task needs (~0.25 s) while this
process checks and hashes the data files and opens the store (schema check, migrations;
~0.2 s for a new file); the workers fork from it when the first tasks are submitted. A
missing or unreadable data file is refused before the store is opened, so it leaves no
database file behind; a bad store is refused before any task runs. Either way the pool is
shut down.
"""
from __future__ import annotations

from typing import Any

from app.sweep.driver import Progress, SweepDriver, SweepRequest
from app.sweep.executors import make_backend
from store.db import init_db


def run_sweep(request: SweepRequest, db_url: str, *, workers: int | None = None, scheduler: str | None = None,
              retries: int = 2, progress: Progress | None = None) -> dict[str, Any]:
    """Run (or resume, by ``request.name``) the sweep; returns the summary that ``run_sweep.py --json`` prints."""
    backend = make_backend(workers, scheduler, threads=request.threads, retries=retries)  # the forkserver imports
    db = None
    try:
        driver = SweepDriver(request, None, backend, progress)  # names, values and files: before any store exists
        driver.db = db = init_db(db_url)
        return driver.run()
    finally:
        backend.close()
        if db is not None:
            db.dispose()  # close the pool now: an in-process caller keeps no connection
