"""Market data in: files, the synthetic generator and (later) live exchange feeds.

Every feed yields :class:`domain.types.Bar` strictly increasing in ``ts_ms``.
"""
