"""Alembic environment: runs on the connection ``store.db`` hands over (config.attributes['connection'])."""
from __future__ import annotations

from alembic import context

from store.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only store.db drives migrations
    raise RuntimeError("store migrations run through store.db.upgrade_db(), not the alembic command line")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
