"""Errors that belong to the domain rather than to one package."""
from __future__ import annotations


class DataError(ValueError):
    """Bad market data; the message says what is wrong and where (file/line or source)."""
