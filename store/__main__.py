"""``python -m store upgrade --db URL``: migrate a database made by an older version of this tool.

Also ``python -m store revision --db URL``: print the database's schema revision and this code's;
``python -m store delete RUN --db URL``: delete a run (id, unique id prefix or name) with all its
rows, e.g. one that failed or was interrupted and holds a name you want to use again; and
``python -m store delete-sweep SWEEP --db URL``: delete a sweep with all its runs (a sweep's name
resumes it, so this is how a name is used for a new sweep).
Exit 0 on success; 2 with one line on stderr when the database or the run cannot be used; 3 when
the database fails while working.
"""
from __future__ import annotations

import argparse
import sys

from sqlalchemy.exc import SQLAlchemyError

from store.db import DEFAULT_DB_URL, StoreError, _probe, _safe, _sqlite_path, error_line, normalise_url, upgrade_db
from store.migrations import HEAD


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m store", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("upgrade", "revision", "delete", "delete-sweep"))
    parser.add_argument("target", nargs="?", metavar="RUN|SWEEP",
                        help="delete: the run's id, unique id prefix or name; delete-sweep: the sweep's name")
    parser.add_argument("--db", default=DEFAULT_DB_URL, help="SQLAlchemy URL or SQLite file (default %(default)s)")
    parser.add_argument("--force", action="store_true",
                        help="delete, delete-sweep: skip the check that no live process owns the run (a 'running' "
                             "run whose owner was not recorded) or that the sweep is not marked running")
    args = parser.parse_args(argv)
    deleting = args.command.startswith("delete")
    if (args.target is not None) != deleting:
        parser.error("RUN goes with delete and SWEEP with delete-sweep, and only with them")
    try:
        if deleting:
            from store.db import init_db
            from store.maintenance import delete_run, delete_sweep

            engine = init_db(args.db, create=False)
            try:
                remove = delete_run if args.command == "delete" else delete_sweep
                print(remove(engine, args.target, force=args.force).describe())
            finally:
                engine.dispose()
            return 0
        if args.command == "revision":
            url = normalise_url(args.db)
            state = _probe(url, _sqlite_path(url))
            found = "empty" if state.empty else (state.revision or f"foreign ({state.why_foreign})")
            print(f"{_safe(url)}: {found}; this code: {HEAD}")
            return 0
        before, after = upgrade_db(args.db)
        print(f"{_safe(normalise_url(args.db))}: {before or 'new'} -> {after}")
        return 0
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        print(f"error: database error: {error_line(exc)}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
