"""Trading strategies: I/O-free objects that see ``(bar, ctx)`` and act through ``ctx``."""
