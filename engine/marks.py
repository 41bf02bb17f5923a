"""The per-bar equity mark, recorded as cheaply as the loop allows.

Cash and position change only when a fill is applied (STYLE.md §3), so between fills
they are constant. The loop therefore appends just the bar's time and close, and notes
the book (cash, position) at each mark where it changed; :meth:`EquityMarks.flush`
fills the cash, position and equity columns from those notes with numpy. The values
are the same floats the loop would have computed: equity = cash + position × close,
one rounded multiply and one rounded add, as in Python.
"""
from __future__ import annotations

import numpy as np

from domain.events import EngineEvents


class EquityMarks:
    """Book notes for one run's equity columns (``events.equity_*``)."""

    __slots__ = ("events", "_at", "_cash", "_qty")

    def __init__(self, events: EngineEvents) -> None:
        self.events = events
        self._at: list[int] = []  # mark index from which the noted book holds
        self._cash: list[float] = []
        self._qty: list[float] = []

    def note_book(self, cash_quote: float, position_qty: float) -> None:
        """The book from the next mark on (call after fills are applied, before that bar's mark)."""
        at = len(self.events.equity_ts_ms)
        if self._at and self._at[-1] == at:  # changed twice before one mark: the last one holds
            self._cash[-1], self._qty[-1] = cash_quote, position_qty
            return
        self._at.append(at)
        self._cash.append(cash_quote)
        self._qty.append(position_qty)

    def flush(self) -> None:
        """Fill ``equity_cash``, ``equity_position`` and ``equity_quote`` up to the latest mark."""
        ev = self.events
        done, total = len(ev.equity_quote), len(ev.equity_ts_ms)
        if done == total:
            return
        if not self._at or self._at[0] > done:
            raise RuntimeError("equity marks without a noted book")  # the engine notes it when trading starts
        # Notes from the last one at or before ``done`` on, each holding until the next note (or the end).
        at = np.asarray(self._at, dtype=np.int64)
        first = int(np.searchsorted(at, done, side="right")) - 1
        bounds = np.clip(np.append(at[first:], total), done, total)
        counts = np.diff(bounds)
        cash = np.repeat(np.asarray(self._cash[first:], dtype=np.float64), counts)
        qty = np.repeat(np.asarray(self._qty[first:], dtype=np.float64), counts)
        close = np.frombuffer(ev.equity_close, dtype=np.float64)[done:total]
        equity = qty * close
        equity += cash  # in place: the same two roundings as cash + qty × close
        del close  # release the view: equity_close must stay resizable
        ev.equity_cash.frombytes(_raw(cash))
        ev.equity_position.frombytes(_raw(qty))
        ev.equity_quote.frombytes(_raw(equity))
        # Notes before the last one in use are no longer needed.
        last = len(at) - 1
        if last > 0:
            del self._at[:last], self._cash[:last], self._qty[:last]


def _raw(values: np.ndarray) -> memoryview:
    """The array's bytes without a copy (array.frombytes wants a byte-format buffer)."""
    return memoryview(values).cast("B")
