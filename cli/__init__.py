"""Shared pieces of the command-line programs: argument types, one-line usage errors, strict JSON."""
