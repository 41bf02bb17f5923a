"""Persistence: SQLAlchemy models, ``init_db`` and the repository that owns transactions."""
