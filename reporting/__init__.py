"""Presentation for people: terminal tables and number formats (no I/O but stdout)."""
