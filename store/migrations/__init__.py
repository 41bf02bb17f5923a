"""Alembic migrations of the store's schema, run programmatically by ``store.db`` (no alembic.ini).

Revisions, oldest first. ``0001_baseline`` is the schema as it was before migrations existed
(files made then carry only ``meta.schema_version = 1``); each later revision is one change.
Keep ``REVISIONS`` in step with ``versions/`` (a test checks it).
"""
from pathlib import Path

REVISIONS = ("0001_baseline", "0002_series_chunks", "0003_run_leases", "0004_sweeps", "0005_run_keys",
             "0006_statement_checked_refs")
HEAD = REVISIONS[-1]
BASELINE = REVISIONS[0]
SCRIPT_LOCATION = str(Path(__file__).resolve().parent)
