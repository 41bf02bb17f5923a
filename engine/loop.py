"""The bar loop, shared by backtests and paper trading (only the feed differs).

Per bar, in this order (DESIGN.md "Execution"):
1. pending orders from earlier closes fill on this bar's prices (broker);
2. the strategy sees the closed bar and may submit orders through ``ctx``
   (this engine), which fill from the next bar on;
3. equity is marked at the bar's close. If it is zero or below, the run hits its
   equity floor: the strategy is not called again, pending orders are cancelled and
   the position is closed at the next open (``EngineEvents.equity_floor_ts``).

Bars before ``trade_from_ms`` are warm-up: the strategy sees them (indicators,
features, models warm up) but any order it submits is discarded, and no equity
is recorded. This is how a paper run's history and ``--trade-from`` work.

Three ways to drive it: :meth:`Engine.run` (a backtest over any stream of bars: events
accumulate in column buffers, nothing is built per bar), :meth:`Engine.run_series` (a
backtest over a whole series: the same, and bars a strategy promises to pass quietly are
passed in bulk) and :meth:`Engine.step` (paper trading: one bar at a time, returning a
typed :class:`domain.events.StepResult` to commit).
"""
from __future__ import annotations

import gc
from array import array
from itertools import islice
from contextlib import contextmanager
from typing import Iterable, Iterator, Sequence

import numpy as np

from domain.columns import COMPACT_EVERY
from domain.errors import DataError
from domain.events import ChunkListener, EngineEvents, StepResult
from domain.series import BarSeries, make_bar
from domain.types import Bar, EquityPoint, Fill, Order, Trade
from engine.broker import BrokerConfig, SimulatedBroker
from engine.costs import FeeModel, SlippageModel
from engine.context import StrategyContext
from engine.marks import EquityMarks
from engine.portfolio import Portfolio
from strategies.base import Strategy

__all__ = ["Engine", "EngineEvents", "StepResult"]

_NO_FILLS: tuple[list[Fill], list[Trade]] = ([], [])


class Engine(StrategyContext):
    """Runs one strategy over a stream of bars; also the ``ctx`` a strategy acts through.

    The order methods (``target_percent``, ``close``, ``market``, ``stop``, ``limit``,
    ``record_signal``) and their rules are :class:`engine.context.StrategyContext`'s.
    """

    def __init__(self, strategy: Strategy, config: BrokerConfig = BrokerConfig(),
                 *, trade_from_ms: int | None = None, order_prefix: str = "o",
                 fee_model: FeeModel | None = None, slippage_model: SlippageModel | None = None) -> None:
        super().__init__(config, trade_from_ms, order_prefix)
        self.strategy = strategy
        self.portfolio = Portfolio(config.cash_quote)
        self.events = EngineEvents()
        self.broker = SimulatedBroker(config, self.portfolio, fee_model=fee_model, slippage_model=slippage_model,
                                      placed_bar=self._placed_bar, order_log=self.events.orders)
        self._accept = self.broker.submit  # the broker also logs each order in events.orders
        self._on_bar = strategy.on_bar
        # Per bar the loop appends only time and close; cash, position and equity are filled
        # from book notes (engine/marks.py). Bound appends: the mark is the hottest code in a run.
        ev = self.events
        self._marks = EquityMarks(ev)
        self._mark_ts, self._mark_close = ev.equity_ts_ms.append, ev.equity_close.append
        self._sig_ts, self._sig_value, self._sig_threshold, self._sig_unusual, self._sig_version = \
            ev.signals.appenders()
        if self.trading:
            self._marks.note_book(self.portfolio.cash_quote, self.portfolio.position_qty)
        self._bar_fills: tuple[list[Fill], list[Trade]] = _NO_FILLS

    # ---- running -------------------------------------------------------------------
    def run(self, bars: Iterable[Bar], on_chunk: ChunkListener | None = None) -> EngineEvents:
        """Feed every bar, then stop the strategy. Returns the run's events.

        ``on_chunk`` (if given) sees the events after every chunk of bars (domain.events.ChunkListener)."""
        self.begin()
        advance = self._advance
        compact_signals = self.events.signals.compact_if_due
        stream = iter(bars)
        with _rare_collections():
            # In chunks, so that the per-bar signals move into typed arrays between chunks
            # without a per-bar check.
            while chunk := list(islice(stream, COMPACT_EVERY)):
                for bar in chunk:
                    advance(bar)
                compact_signals()
                if on_chunk is not None:
                    on_chunk(self.events, self.broker.status)
        self.end()
        return self.events

    def run_series(self, series: BarSeries, on_chunk: ChunkListener | None = None) -> EngineEvents:
        """:meth:`run` over a whole series, with quiet bars passed in bulk (``on_chunk`` as for :meth:`run`).

        Whenever nothing is pending after a bar, the strategy is asked how many of the next bars
        it would pass without an order (:meth:`strategies.base.Strategy.quiet_bars`, after its
        ``prepare_backtest``). Those bars get no fills (nothing is pending), no decision and an
        unchanged book, so the loop appends their times and closes as marks, tells the strategy
        (``skip_bars``) and moves on. Stopped short of any bar whose mark would
        reach the equity floor, and of warm-up bars. The events are the ones :meth:`run` gives,
        value for value (tests hold both equal); a strategy without the fast path gets :meth:`run`.
        """
        strategy = self.strategy
        if type(strategy).quiet_bars is Strategy.quiet_bars or len(series) < 2 \
                or not bool(np.all(series.ts_ms[1:] > series.ts_ms[:-1])):
            return self.run(series.iter_bars(), on_chunk)  # (bars out of order: run() says at which one)
        self.begin()
        advance, broker, ev = self._advance, self.broker, self.events
        with _rare_collections():
            for start in range(0, len(series), COMPACT_EVERY):
                chunk = series.take(slice(start, start + COMPACT_EVERY))
                # Typed arrays: a copy of the bytes, and indexing one gives a plain int or float.
                t_, o_, h_, l_, c_, v_ = (_typed(c, code) for c, code in (
                    (chunk.ts_ms, "q"), (chunk.open, "d"), (chunk.high, "d"), (chunk.low, "d"), (chunk.close, "d"),
                    (chunk.volume, "d")))
                n, i = len(t_), 0
                while i < n:
                    advance(make_bar((t_[i], o_[i], h_[i], l_[i], c_[i], v_[i])))
                    i += 1
                    if broker.pending or not self.trading or self.equity_floor_ts is not None or i == n:
                        continue
                    count = self._pass_quiet_bars(t_, c_, i)
                    if count:
                        i += count
                        last = i - 1
                        self.bar = make_bar((t_[last], o_[last], h_[last], l_[last], c_[last], v_[last]))
                ev.signals.compact_if_due()
                if on_chunk is not None:
                    on_chunk(ev, broker.status)
        self.end()
        return self.events

    def _pass_quiet_bars(self, ts: array, close: array, start: int) -> int:
        """Pass the bars from ``ts[start]`` on that the strategy promises are quiet (up to the end of
        these arrays); how many."""
        pf = self.portfolio
        count = self.strategy.quiet_bars(pf.position_qty, len(ts) - start)
        if count > 0:
            count = _before_floor(close[start:start + count], pf.cash_quote, pf.position_qty)
        if count <= 0:
            return 0
        stop = start + count
        self.strategy.skip_bars(count, self)
        ev = self.events
        ev.equity_ts_ms.extend(ts[start:stop])
        ev.equity_close.extend(close[start:stop])
        self.bar_index += count
        self._last_ts = ts[stop - 1]
        return count

    def end(self) -> None:
        """Stop the strategy and complete the equity columns."""
        super().end()
        self._marks.flush()

    def step(self, bar: Bar) -> StepResult:
        """Process one closed bar (fills, decision, mark) and return everything it changed."""
        ev = self.events
        first_order, first_signal = len(ev.orders), len(ev.signals)  # this engine's own append-only logs
        changes: dict[str, str] = {}
        self.broker.changes = changes
        self._bar_fills = _NO_FILLS
        ev.signals.compact_if_due()
        try:
            self._advance(bar)
        finally:
            self.broker.changes = None
        fills, trades = self._bar_fills
        equity = None
        if self.trading:
            self._marks.flush()
            equity = EquityPoint(ev.equity_ts_ms[-1], ev.equity_cash[-1], ev.equity_position[-1],
                                 ev.equity_close[-1], ev.equity_quote[-1])
        return StepResult(bar=bar, bar_index=self.bar_index, fills=tuple(fills), trades=tuple(trades),
                          orders=tuple(ev.orders[first_order:]), status_changes=changes, equity=equity,
                          signals=tuple(ev.signals[first_signal:]),
                          equity_floor_hit=self.equity_floor_ts is not None and self.equity_floor_ts == bar.ts_ms)

    def _advance(self, bar: Bar) -> None:
        """Fills, then the strategy's decision, then the mark (a bar with fills leaves them in ``_bar_fills``)."""
        ts = bar.ts_ms
        if ts <= self._last_ts:
            raise DataError(f"bars out of order: {ts} after {self._last_ts}")
        self._last_ts = ts
        self.bar_index += 1
        if self.broker.pending:
            fills, trades = self.broker.process(bar, self.bar_index)
            if fills:
                self.events.fills.extend(fills)
                self.events.trades.extend(trades)
                self._bar_fills = fills, trades
                self._marks.note_book(self.portfolio.cash_quote, self.portfolio.position_qty)
        self.bar = bar
        if not self.trading and ts >= self.trade_from_ms:  # type: ignore[operator]
            self.trading = True
            self._marks.note_book(self.portfolio.cash_quote, self.portfolio.position_qty)
        self._on_bar(bar, self)
        if self.trading:
            pf = self.portfolio
            close = bar.close
            self._mark_ts(ts)
            self._mark_close(close)
            if pf.cash_quote + pf.position_qty * close <= 0.0:
                self._hit_equity_floor(ts)

    def record_signals(self, ts_ms: Sequence[int], signal: Sequence[float], threshold: float | None = None,
                       unusualness: float | None = None, model_version: int | None = None) -> None:
        ts_ms, signal = self._traded_part(ts_ms, signal)
        self.events.signals.extend(ts_ms, signal, threshold, unusualness, model_version)

    def record_signal(self, signal: float, threshold: float | None = None, unusualness: float | None = None,
                      model_version: int | None = None) -> None:
        """Store what the strategy saw at this close: one append per field (the base class's rule, inlined)."""
        if self.trading:
            self._sig_ts(self._last_ts)
            self._sig_value(signal)
            self._sig_threshold(threshold)
            self._sig_unusual(unusualness)
            self._sig_version(model_version)

    def _hit_equity_floor(self, ts_ms: int) -> None:
        self._on_bar = _skip_bar  # the strategy trades no more
        super()._hit_equity_floor(ts_ms)

    # ---- the strategy's view (ctx) -------------------------------------------------------
    @property
    def position_qty(self) -> float:
        """Signed base quantity held after this bar's fills."""
        return self.portfolio.position_qty

    @property
    def cash_quote(self) -> float:
        return self.portfolio.cash_quote

    @property
    def equity_quote(self) -> float:
        """Equity marked at the current bar's close."""
        assert self.bar is not None
        return self.portfolio.equity(self.bar.close)

    @property
    def avg_entry_price(self) -> float:
        return self.portfolio.avg_entry_price

    @property
    def pending_orders(self) -> list[Order]:
        return list(self.broker.pending)

    def cancel_all(self) -> None:
        self.broker.cancel_all()


@contextmanager
def _rare_collections() -> Iterator[None]:
    """The loop makes many small acyclic objects; frequent young-generation collections only
    cost time (about 1/3 of the loop on 1M bars), so collect far less often while it runs."""
    old_threshold = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*old_threshold)


def _before_floor(closes: array, cash: float, qty: float) -> int:
    """How many of these closes mark equity (cash + qty × close, as the loop rounds it) above zero
    before the first that does not."""
    if qty == 0.0 and cash > 0.0 or qty > 0.0 and cash >= 0.0:
        return len(closes)  # flat with cash, or long without debt: every mark is positive
    # The rounded mark is monotone in the close, so its lowest value is at the highest close of a
    # short (the lowest of a long): when that one is above zero, all are.
    worst = max(closes) if qty < 0.0 else min(closes)
    if cash + qty * worst > 0.0:
        return len(closes)
    return next((k for k, close in enumerate(closes) if cash + qty * close <= 0.0), len(closes))


def _typed(values: np.ndarray, code: str) -> array:
    out = array(code)
    out.frombytes(memoryview(np.ascontiguousarray(values, dtype=np.int64 if code == "q" else np.float64)).cast("B"))
    return out


def _skip_bar(bar: Bar, ctx: object) -> None:
    """Stands in for the strategy's on_bar after the equity floor: no more decisions."""
