"""Read-only inspection of stored runs: queries, terminal tables, exports, HTML/PNG reports.

The command line lives in ``inspect_trades.py``; every piece here opens the
database read-only (``store.db.init_db(..., read_only=True)``), so it is safe to
point at the file of a paper trader that is still writing.
"""
