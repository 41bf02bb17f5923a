"""Compatibility alias: model-version records live in the ground package ``domain.records``.

(Storage needs them too, and store/ may import only the ground layer.)
"""
from domain.records import ModelVersionRecord  # noqa: F401
