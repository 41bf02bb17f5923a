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
        marks = np.arange(done, total)
        which = np.searchsorted(np.asarray(self._at), marks, side="right") - 1
        cash = np.asarray(self._cash, dtype=np.float64)[which]
        qty = np.asarray(self._qty, dtype=np.float64)[which]
        close = np.frombuffer(ev.equity_close, dtype=np.float64)[done:total]
        equity = cash + qty * close
        ev.equity_cash.frombytes(cash.tobytes())
        ev.equity_position.frombytes(qty.tobytes())
        ev.equity_quote.frombytes(equity.tobytes())
        # Notes before the last one in use are no longer needed.
        last = int(which[-1])
        if last > 0:
            del self._at[:last], self._cash[:last], self._qty[:last]
