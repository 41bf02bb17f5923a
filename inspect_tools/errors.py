"""The one exception the inspector shows the user as a one-line message."""
from __future__ import annotations


class InspectError(RuntimeError):
    """Bad user input or an unusable run: printed as ``error: <message>``, exit status 1."""
