"""Compatibility alias: the domain types live in the ground package ``domain.types``.

Import from ``domain.types`` in new code; this module only keeps older imports working.
"""
from domain.types import (CANCELLED, EXPIRED, FILLED, REJECTED, SUBMITTED, Bar, EquityPoint, Fill,  # noqa: F401
                          Liquidity, Order, OrderType, Side, SignalPoint, Trade)
