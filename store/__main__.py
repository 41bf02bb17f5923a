"""``python -m store upgrade --db URL``: migrate a database made by an older version of this tool.

Also ``python -m store revision --db URL``: print the database's schema revision and this code's.
Exit 0 on success; 2 with one line on stderr when the database cannot be used.
"""
from __future__ import annotations

import argparse
import sys

from store.db import DEFAULT_DB_URL, StoreError, _probe, _safe, _sqlite_path, normalise_url, upgrade_db
from store.migrations import HEAD


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m store", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("upgrade", "revision"))
    parser.add_argument("--db", default=DEFAULT_DB_URL, help="SQLAlchemy URL or SQLite file (default %(default)s)")
    args = parser.parse_args(argv)
    try:
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


if __name__ == "__main__":
    sys.exit(main())
