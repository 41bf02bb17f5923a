"""Run an unchanged strategy inside backtrader's Cerebro, as an independent check of our engine.

The strategy object is the same one the native engine runs; only its ``ctx`` differs:
here ``ctx`` turns ``target_percent / close / market / stop / limit`` into backtrader
orders, and every price, quantity and fee in the result comes from backtrader's own
fills (``notify_order``). Trades are rebuilt from those fills with
:class:`engine.portfolio.Portfolio` (backtrader's own round trips are kept beside them
in ``bt_trades`` for cross-checks); equity is ``broker.getvalue()`` at each close.

Fill timing, as in the native engine: the strategy decides at the close of bar t
(``next()``), and orders fill on bar t+1 — market orders at its open.

Where backtrader's semantics differ from DESIGN.md, and how they are aligned here:

* Sizing. backtrader sizes an order when it is created, i.e. at the signal bar's
  close; DESIGN.md sizes all-in/target orders at the fill (q = f·equity / (O'·(1+fee))).
  So decisions are only *recorded* in ``next()`` and turned into sized backtrader
  orders in ``next_open()`` of bar t+1 (``cheat_on_open=True``; Cerebro then also
  sets the broker's ``coo``, so those market orders fill at that same bar's open).
* Cash check. backtrader refuses an opening fill that would leave cash < 0 by even
  one rounding error, which an exact all-in size hits about half the time. Such a
  quantity is shaved by a few ulps (relative change ~1e-16) so the fill goes through;
  our engine does not check cash. ``set_checksubmit(False)``: backtrader's pre-check
  would price a cheat-on-open market order without slippage and the stop/limit ones at
  their trigger, which is not when or how they fill.
* Stops and limits are good-till-cancelled in our engine and processed market first,
  then stops, then limits within a bar; backtrader processes its queue in submission
  order. So live stop/limit orders are re-sent to backtrader on every bar, after that
  bar's market orders, sized then (a protective order without ``qty`` is sized to the
  position held after the market orders), and whatever did not fill is cancelled at
  the close; the housekeeping of ``SimulatedBroker.process`` (OCO groups, protective
  exits dropped once flat) is applied at that close. All protective (no ``qty``) exits
  sent on one bar form one backtrader OCO group, so two cannot both fill on one bar.
* Slippage: ``set_slippage_perc(perc, slip_open=True, slip_match=True, slip_out=True)``
  reproduces ``BpsSlippage`` on market and stop fills (price × (1 ± perc), even outside
  the bar's range). backtrader would also slip a limit order that fills at a gapped open;
  DESIGN.md does not, so the broker below turns that off for limit orders.
* Commission: ``setcommission(commission=fee_bps / 1e4)`` (percentage of notional,
  stock-like, ``shortcash=True`` so a short credits cash and equity = cash + qty·close).
  ``coc`` is off (no cheat-on-close).

Known limits (our engine and this adapter can differ; none arises with the shipped
strategies): several market orders decided at one close are sized with a cash figure
projected by this adapter rather than backtrader's; when two or more sized stop/limit
orders fill on the same bar, the later one's size and long-only cap are fixed when it
is sent, not at its fill; backtrader rejects (status ``rejected``) a stop/limit buy
that needs more cash than the account has, where our engine lets cash go negative;
a target order smaller than 1e-12 base units (a drained account) is sent here, while
``engine.broker`` treats it as a no-op.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from engine.broker import BrokerConfig, OrderRejected
from engine.loop import EngineEvents
from engine.portfolio import Portfolio
from engine.types import Bar, Fill, Order, OrderType, Side, SignalPoint
from feeds.series import BarSeries
from strategies.base import Strategy

_QTY_EPS = 1e-12  # a target within this fraction of the position (or of itself) is a no-op
_EPOCH_ORDINAL = 719_163  # datetime(1970, 1, 1).toordinal(): backtrader's date numbers are ordinal days
_MS_PER_DAY = 86_400_000


def _import_backtrader():
    """Import backtrader on a headless machine (Agg backend) and a modern Python."""
    import collections
    import collections.abc

    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:  # plotting is optional; running is not
        pass
    for name in ("Iterable", "Mapping", "Sequence"):  # removed from `collections` in Python 3.10
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    import backtrader

    return backtrader


bt = _import_backtrader()


@dataclass(frozen=True, slots=True)
class BacktraderTrade:
    """A closed round trip as backtrader's own ``Trade`` reports it (kept for cross-checks)."""

    side: str  # "long" | "short"
    entry_ts_ms: int
    exit_ts_ms: int
    gross_pnl_quote: float
    fees_quote: float
    pnl_quote: float


@dataclass
class BacktraderRun(EngineEvents):
    """The same fields as :class:`engine.loop.EngineEvents`, plus final order statuses.

    ``events`` returns the object itself, so callers written for ``BacktestResult``
    (``result.events``, ``result.order_status``) work unchanged.
    """

    order_status: dict[str, str] = field(default_factory=dict)
    bt_trades: list[BacktraderTrade] = field(default_factory=list)
    rejected_orders: int = 0  # orders backtrader refused (margin); 0 in an aligned run

    @property
    def events(self) -> EngineEvents:
        return self


def run_in_backtrader(strategy: Strategy, series: BarSeries, config: BrokerConfig = BrokerConfig(),
                      trade_from_ms: int | None = None, *, order_prefix: str = "o") -> BacktraderRun:
    """Run ``strategy`` over ``series`` in backtrader's Cerebro with our fill rules.

    Timing: decisions at each bar's close; market orders fill at the next bar's open
    (slipped), stops/limits inside the next bar's range; ``fee_bps`` per fill. Bars
    before ``trade_from_ms`` only warm the strategy up (orders discarded, no equity).
    Client order ids are ``order_prefix`` + a counter, as in the native engine.
    """
    if len(series) == 0:
        return BacktraderRun()
    ctx = BacktraderContext(strategy, series, config, trade_from_ms, order_prefix)
    cerebro = bt.Cerebro(stdstats=False, cheat_on_open=True, preload=True, runonce=True,
                         maxcpus=1, quicknotify=False)
    broker = _AlignedBroker()
    cerebro.setbroker(broker)
    broker.set_cash(config.cash_quote)
    broker.setcommission(commission=config.fee_bps / 10_000.0)
    broker.set_coc(False)
    broker.set_checksubmit(False)
    broker.set_shortcash(True)
    if config.slippage_bps:
        broker.set_slippage_perc(config.slippage_bps / 10_000.0, slip_open=True, slip_limit=False,
                                 slip_match=True, slip_out=True)
    ts = series.ts_ms.astype("float64") / _MS_PER_DAY + _EPOCH_ORDINAL
    columns = (ts.tolist(), series.open.tolist(), series.high.tolist(), series.low.tolist(),
               series.close.tolist(), series.volume.tolist())
    cerebro.adddata(_ColumnFeed(columns=columns, timeframe=bt.TimeFrame.Minutes,
                                compression=max(1, series.timeframe_ms // 60_000)))
    cerebro.addstrategy(_Bridge, ctx=ctx)
    cerebro.run()
    return ctx.events


class _AlignedBroker(bt.brokers.BackBroker):
    """backtrader's broker, except that a limit order filling at a gapped open is not slipped."""

    def _try_exec_limit(self, order, popen, phigh, plow, plimit):
        slip_open = self.p.slip_open
        self.p.slip_open = False
        try:
            super()._try_exec_limit(order, popen, phigh, plow, plimit)
        finally:
            self.p.slip_open = slip_open


class _ColumnFeed(bt.feed.DataBase):
    """A minimal feed copying from plain lists (``PandasData`` reads cell by cell and is ~2× slower)."""

    params = (("columns", None),)

    def start(self):
        super().start()
        self._rows = zip(*self.p.columns)

    def _load(self):
        row = next(self._rows, None)
        if row is None:
            return False
        lines = self.lines
        lines.datetime[0], lines.open[0], lines.high[0], lines.low[0], lines.close[0], lines.volume[0] = row
        lines.openinterest[0] = 0.0
        return True


class _Bridge(bt.Strategy):
    """The backtrader strategy: forwards every hook to the :class:`BacktraderContext`."""

    params = (("ctx", None),)

    def start(self):
        self.p.ctx.attach(self)

    def next_open(self):
        self.p.ctx.on_open()

    def next(self):
        self.p.ctx.on_close()

    def notify_order(self, order):
        self.p.ctx.on_bt_order(order)

    def notify_trade(self, trade):
        self.p.ctx.on_bt_trade(trade)

    def stop(self):
        self.p.ctx.detach()


class BacktraderContext:
    """The ``ctx`` a strategy acts through inside backtrader (the :class:`strategies.base.Context` protocol).

    Reads (position, cash, equity) come from backtrader's broker; orders are held
    until the next bar's open, then sized and sent to backtrader (see module doc).
    """

    def __init__(self, strategy: Strategy, series: BarSeries, config: BrokerConfig,
                 trade_from_ms: int | None, order_prefix: str = "o") -> None:
        self.strategy = strategy
        self.config = config
        self.events = BacktraderRun()
        self.trade_from_ms = trade_from_ms
        self.trading = trade_from_ms is None
        self.bar: Bar | None = None
        self.bar_index = -1
        self._ts = series.ts_ms.tolist()
        self._open = series.open.tolist()
        self._high = series.high.tolist()
        self._low = series.low.tolist()
        self._close = series.close.tolist()
        self._volume = series.volume.tolist()
        self._fee_rate = config.fee_bps / 10_000.0
        self._slip = config.slippage_bps / 10_000.0
        self._prefix = order_prefix
        self._seq = 0
        self._queued: list[Order] = []  # market orders decided at the last close
        self._priced: list[Order] = []  # live (good-till-cancelled) stop and limit orders
        self._sent: dict[int, tuple[object, Order]] = {}  # backtrader ref → (bt order, our order), this bar
        self._filled_groups: set[str] = set()
        self._book = Portfolio(config.cash_quote)  # rebuilt from backtrader's fills: trades, bars held
        self._bt = None
        self._started = False

    # ---- backtrader hooks ----------------------------------------------------------------
    def attach(self, bridge) -> None:
        self._bt = bridge
        if not self._started:
            self._started = True
            self.strategy.on_start(self)

    def detach(self) -> None:
        self.strategy.on_stop(self)

    def on_open(self) -> None:
        """Bar t+1's open is known: size and send what was decided at bar t's close."""
        if not (self._queued or self._priced):
            return
        i = len(self._bt.data) - 1
        raw_open = self._open[i]
        position = self._bt.position
        pos, pos_price, cash = position.size, position.price, self._bt.broker.getcash()
        for order in self._queued:
            plan = self._plan_market(order, pos, cash, raw_open)
            if plan is None:
                self.events.order_status[order.client_id] = "cancelled"
                continue
            side, qty, price = plan
            qty = self._fit_cash(side, qty, price, pos, pos_price, cash)
            self._send(order, side, qty, bt.Order.Market, None, None)
            pos, pos_price, cash = _after_fill(side, qty, price, pos, pos_price, cash, self._fee_rate)
        self._queued = []
        leaders: dict[str, object] = {}
        for order in sorted(self._priced, key=_priority):
            plan = self._plan_priced(order, pos)
            if plan is None:
                continue
            side, qty = plan
            keys = []
            if order.oco_group is not None:
                keys.append("group:" + order.oco_group)
            if order.target_fraction == 0.0:
                keys.append("protective")
            leader = next((leaders[k] for k in keys if k in leaders), None)
            exectype = bt.Order.Stop if order.type is OrderType.STOP else bt.Order.Limit
            sent = self._send(order, side, qty, exectype, order.price, leader)
            for k in keys:
                leaders.setdefault(k, sent)

    def on_close(self) -> None:
        """Bar t has closed (its fills already notified): housekeeping, the decision, the mark."""
        broker = self._bt.broker
        i = len(self._bt.data) - 1
        if self._sent:  # stop/limit orders that did not fill are re-sent on the next bar
            for bt_order, order in self._sent.values():
                broker.cancel(bt_order)
                if order.type is OrderType.MARKET:  # always fills at the open in our engine
                    self.events.order_status[order.client_id] = "rejected"
                    self.events.rejected_orders += 1
            self._sent = {}
        if self._priced:
            self._housekeep()
        bar = Bar(self._ts[i], self._open[i], self._high[i], self._low[i], self._close[i], self._volume[i])
        self.bar = bar
        self.bar_index = i
        if not self.trading and bar.ts_ms >= self.trade_from_ms:  # type: ignore[operator]
            self.trading = True
        self.strategy.on_bar(bar, self)
        if self.trading:
            ev = self.events
            ev.equity_ts_ms.append(bar.ts_ms)
            ev.equity_cash.append(broker.getcash())
            ev.equity_position.append(self._bt.position.size)
            ev.equity_close.append(bar.close)
            ev.equity_quote.append(broker.getvalue())

    def on_bt_order(self, bt_order) -> None:
        """Record backtrader's fills; cancellations are decided by our rules at the close."""
        status = bt_order.status
        if status == bt.Order.Completed:
            _, order = self._sent.pop(bt_order.ref)
            i = len(self._bt.data) - 1
            # One fill per execution bit: ``executed.price`` is re-averaged as
            # (size·price)/size, which can move the price by an ulp.
            for bit in bt_order.executed.exbits:
                side = Side.BUY if bit.size > 0 else Side.SELL
                fill = Fill(order.client_id, self._ts[i], side, abs(bit.size), bit.price, bit.comm, order.reason)
                self.events.fills.append(fill)
                trade = self._book.apply(fill, i)
                if trade is not None:
                    self.events.trades.append(trade)
            self.events.order_status[order.client_id] = "filled"
            if order.type is not OrderType.MARKET:
                self._priced.remove(order)
                if order.oco_group is not None:
                    self._filled_groups.add(order.oco_group)
        elif status in (bt.Order.Margin, bt.Order.Rejected):
            entry = self._sent.pop(bt_order.ref, None)
            if entry is not None:
                order = entry[1]
                self.events.order_status[order.client_id] = "rejected"
                self.events.rejected_orders += 1
                if order in self._priced:
                    self._priced.remove(order)

    def on_bt_trade(self, trade) -> None:
        if trade.isclosed:
            self.events.bt_trades.append(BacktraderTrade(
                "long" if trade.long else "short", self._ts[trade.baropen - 1], self._ts[trade.barclose - 1],
                trade.pnl, trade.commission, trade.pnlcomm))

    # ---- the strategy's view (ctx) ------------------------------------------------------------
    @property
    def position_qty(self) -> float:
        """Signed base quantity held after this bar's fills (backtrader's position)."""
        return self._bt.position.size

    @property
    def cash_quote(self) -> float:
        return self._bt.broker.getcash()

    @property
    def equity_quote(self) -> float:
        """Equity marked at the current bar's close (backtrader's ``getvalue()``)."""
        return self._bt.broker.getvalue()

    @property
    def avg_entry_price(self) -> float:
        return self._bt.position.price

    @property
    def bars_in_position(self) -> int | None:
        """Bars since the current position's first fill (0 on the fill bar), None when flat."""
        entry = self._book.open_trade_entry_bar()
        return None if entry is None else self.bar_index - entry

    @property
    def pending_orders(self) -> list[Order]:
        return self._queued + self._priced

    def target_percent(self, fraction: float, reason: str, **info) -> Order | None:
        """Hold ``fraction`` of equity (signed) after the next open; sized at that open."""
        if fraction < 0 and self.config.long_only:
            raise OrderRejected("short orders are not allowed with long_only")
        return self._submit(OrderType.MARKET, reason, target_fraction=float(fraction), **info)

    def close(self, reason: str, **info) -> Order | None:
        return self._submit(OrderType.MARKET, reason, target_fraction=0.0, **info)

    def market(self, side: Side, qty: float, reason: str, **info) -> Order | None:
        return self._submit(OrderType.MARKET, reason, side=side, qty=_positive(qty), **info)

    def stop(self, side: Side, price: float, reason: str, qty: float | None = None,
             oco_group: str | None = None, **info) -> Order | None:
        return self._priced_order(OrderType.STOP, side, price, reason, qty, oco_group, info)

    def limit(self, side: Side, price: float, reason: str, qty: float | None = None,
              oco_group: str | None = None, **info) -> Order | None:
        return self._priced_order(OrderType.LIMIT, side, price, reason, qty, oco_group, info)

    def cancel_all(self) -> None:
        for order in self._queued + self._priced:
            self.events.order_status[order.client_id] = "cancelled"
        self._queued = []
        self._priced = []

    def record_signal(self, signal: float, threshold: float | None = None,
                      unusualness: float | None = None, model_version: int | None = None) -> None:
        if self.trading:
            self.events.signals.append(SignalPoint(self.bar.ts_ms, signal, threshold, unusualness, model_version))

    # ---- internals ------------------------------------------------------------------------------
    def _priced_order(self, type_: OrderType, side: Side, price: float, reason: str, qty: float | None,
                      oco_group: str | None, info: dict) -> Order | None:
        if not price > 0:
            raise OrderRejected(f"{type_.value} price must be positive, got {price!r}")
        if qty is None:
            return self._submit(type_, reason, side=side, target_fraction=0.0, price=price, oco_group=oco_group,
                                **info)
        return self._submit(type_, reason, side=side, qty=_positive(qty), price=price, oco_group=oco_group, **info)

    def _submit(self, type_: OrderType, reason: str, **fields) -> Order | None:
        if not self.trading:
            return None
        self._seq += 1
        order = Order(client_id=f"{self._prefix}{self._seq}", created_ts_ms=self.bar.ts_ms, type=type_,
                      reason=reason, **fields)
        (self._queued if type_ is OrderType.MARKET else self._priced).append(order)
        self.events.orders.append(order)
        self.events.order_status[order.client_id] = "submitted"
        return order

    def _send(self, order: Order, side: Side, qty: float, exectype, price: float | None, oco):
        send = self._bt.buy if side is Side.BUY else self._bt.sell
        bt_order = send(size=qty, price=price, exectype=exectype, oco=oco)
        self._sent[bt_order.ref] = (bt_order, order)
        return bt_order

    def _slipped(self, raw_price: float, side: Side) -> float:
        """``BpsSlippage.adjust`` and backtrader's ``_slip_up/_slip_down``: the same expression."""
        if not self._slip:
            return raw_price
        return raw_price * (1 + self._slip) if side is Side.BUY else raw_price * (1 - self._slip)

    def _plan_market(self, order: Order, pos: float, cash: float, raw_open: float) -> tuple[Side, float, float] | None:
        """(side, qty, price) of a market order at this open, as ``SimulatedBroker._make_fill`` sizes it."""
        rate = self._fee_rate
        fraction = order.target_fraction
        if fraction is None:
            side, qty = order.side, order.qty
        elif fraction == 0.0:
            if pos == 0.0:
                return None
            side, qty = (Side.SELL if pos > 0 else Side.BUY), abs(pos)
        else:
            # target = f × equity / (price × (1 + fee)), at the raw open for the direction,
            # then at the executed (slipped) open for the size.
            target = fraction * (cash + pos * raw_open) / (raw_open * (1.0 + rate))
            side = Side.BUY if target > pos else Side.SELL
            price = self._slipped(raw_open, side)
            target = fraction * (cash + pos * price) / (price * (1.0 + rate))
            delta = target - pos
            # Relative only (DESIGN.md sets no minimum size). engine.broker also treats any
            # |delta| <= 1e-12 base units as a no-op, so the two differ on dust-sized orders.
            if abs(delta) <= _QTY_EPS * max(abs(target), abs(pos)):
                return None
            qty = abs(delta)
        if self.config.long_only and side is Side.SELL and qty > pos * (1.0 + _QTY_EPS):
            if pos <= 0.0:
                return None
            qty = pos
        return side, qty, self._slipped(raw_open, side)

    def _plan_priced(self, order: Order, pos: float) -> tuple[Side, float] | None:
        """(side, qty) to send for a stop/limit order this bar, or None when it cannot fill now."""
        if order.target_fraction == 0.0:
            if pos == 0.0:
                return None
            side = Side.SELL if pos > 0 else Side.BUY
            if side is not order.side:
                raise OrderRejected(f"{order.client_id}: a protective {order.type.value} {order.side.value} order "
                                    f"cannot close a {'long' if pos > 0 else 'short'} position in backtrader")
            return side, abs(pos)
        side, qty = order.side, order.qty
        if self.config.long_only and side is Side.SELL and qty > pos * (1.0 + _QTY_EPS):
            if pos <= 0.0:
                return None
            qty = pos
        return side, qty

    def _fit_cash(self, side: Side, qty: float, price: float, pos: float, pos_price: float, cash: float) -> float:
        """Shave ``qty`` by ulps until backtrader's cash check (cash after an opening fill ≥ 0) passes."""
        if side is not Side.BUY or pos + qty <= 0.0:
            return qty
        for _ in range(64):
            if _bt_cash_after(qty, price, pos, pos_price, cash, self._fee_rate) >= 0.0:
                return qty
            qty = math.nextafter(qty, 0.0)
        return qty

    def _housekeep(self) -> None:
        """Close-of-bar rules of ``SimulatedBroker.process``: OCO siblings of a fill, and protective
        exits once flat, are cancelled; the rest stay live (good-till-cancelled)."""
        flat = self._bt.position.size == 0.0
        groups = self._filled_groups
        kept = []
        for order in self._priced:
            if (order.oco_group is not None and order.oco_group in groups) or (flat and order.target_fraction == 0.0):
                self.events.order_status[order.client_id] = "cancelled"
            else:
                kept.append(order)
        self._priced = kept
        groups.clear()


def _bt_cash_after(size: float, price: float, pos: float, pos_price: float, cash: float, rate: float) -> float:
    """Cash after buying ``size`` at ``price``, with the arithmetic of ``BackBroker._execute``
    (stock-like, percentage commission, ``shortcash``, leverage 1, mult 1)."""
    new = pos + size
    if pos < 0.0:  # buying back (part of) a short first
        closed = -pos if new >= 0.0 else size
        cash += (-closed) * pos_price + (-closed) * (price - pos_price) * 1.0 * True
        cash -= abs(closed) * rate * price
        opened = new if new > 0.0 else 0.0
    else:
        opened = size
    if opened:
        cash -= opened * price / 1.0
        cash -= abs(opened) * rate * price
    return cash


def _after_fill(side: Side, qty: float, price: float, pos: float, pos_price: float, cash: float,
                rate: float) -> tuple[float, float, float]:
    """Projected (position, average price, cash) after a fill, for a second order on the same open."""
    signed = qty if side is Side.BUY else -qty
    new = pos + signed
    if pos == 0.0 or (pos > 0) != (new > 0):
        new_price = price
    elif (pos > 0) == (signed > 0):
        new_price = (pos_price * pos + signed * price) / new
    else:
        new_price = pos_price
    return new, (0.0 if new == 0.0 else new_price), cash - signed * price - qty * price * rate


_PRIORITY = {OrderType.MARKET: 0, OrderType.STOP: 1, OrderType.LIMIT: 2}


def _priority(order: Order) -> int:
    return _PRIORITY[order.type]


def _positive(qty: float) -> float:
    if not qty > 0:
        raise OrderRejected(f"order quantity must be positive, got {qty!r}")
    return float(qty)
