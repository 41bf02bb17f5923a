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
* Stops and limits live until filled, cancelled or expired in our engine and are
  processed market first, then stops, then limits within a bar; backtrader processes its
  queue in submission order. So live stop/limit orders are re-sent to backtrader on every
  bar, after that bar's market orders, sized then with the same ``plan_fill`` (a
  protective order is sized to the position held after the market orders; a passive
  entry with ``target_fraction`` at the price it would fill at on this bar, which the
  open already fixes), and whatever did not fill is cancelled at the close. The
  close-of-bar rules (``engine.orders.settle``: OCO, expiry, bracket links) are the
  native broker's own function. All protective exits sent on one bar form one
  backtrader OCO group, so two cannot both fill on one bar.
* Slippage: ``set_slippage_perc(perc, slip_open=True, slip_match=True, slip_out=True)``
  reproduces ``BpsSlippage`` on market and stop fills (price × (1 ± perc), even outside
  the bar's range). backtrader would also slip a limit order that fills at a gapped open;
  DESIGN.md does not, so the broker below turns that off for limit orders.
* Commission: a percentage of notional per fill (stock-like, ``shortcash=True`` so a short
  credits cash and equity = cash + qty·close), from the fee model's maker or taker rate.
  Which one an order pays (``engine.orders.fill_liquidity``) is known when it is sent:
  the open already says whether a limit is marketable on its first bar. ``coc`` is off.

Known limits (our engine and this adapter can differ; none arises with the shipped
strategies): several market orders decided at one close are sized with a cash figure
projected by this adapter rather than backtrader's; when two or more sized stop/limit
orders fill on the same bar, the later one's size and long-only cap are fixed when it
is sent, not at its fill; a protective exit whose entry is a STOP/LIMIT that fills on
the same bar is only sent from the next bar (our engine can fill a protective limit on
the entry's bar); backtrader rejects (status ``rejected``) a stop/limit buy that needs
more cash than the account has, where our engine lets cash go negative.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from types import SimpleNamespace

from domain.events import EngineEvents
from domain.series import BarSeries
from domain.times import MS_PER_DAY
from domain.types import CANCELLED, FILLED, REJECTED, SUBMITTED, Bar, Fill, Liquidity, Order, OrderType, Side
from engine.broker import BrokerConfig
from engine.costs import BpsSlippage, FeeModel
from engine.context import StrategyContext
from engine.orders import OrderRejected, fill_liquidity, fill_price_at, priority, settle
from engine.portfolio import Portfolio
from engine.sizing import plan_fill
from strategies.base import Strategy

_EPOCH_ORDINAL = 719_163  # datetime(1970, 1, 1).toordinal(): backtrader's date numbers are ordinal days


@functools.cache
def _backtrader() -> SimpleNamespace:
    """backtrader and this adapter's subclasses of it, built on first use (importing this module does not).

    Importing backtrader needs two patches, applied here and not at import time: the
    headless Agg backend for matplotlib, and the ``collections.Iterable/Mapping/Sequence``
    aliases that Python 3.10 removed and backtrader still uses.
    """
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
    import backtrader as bt

    class _AlignedBroker(bt.brokers.BackBroker):
        """backtrader's broker, except that a limit order filling at a gapped open is not slipped,
        and each order pays the commission of its own liquidity (maker or taker, set when sent)."""

        def __init__(self):
            super().__init__()
            self.schemes: dict[str, object] = {}

        def _execute(self, order, *args, **kwargs):
            scheme = self.schemes.get(order.info.get("liquidity"))
            if scheme is None:
                return super()._execute(order, *args, **kwargs)
            default = self.comminfo[None]
            self.comminfo[None] = scheme
            try:
                return super()._execute(order, *args, **kwargs)
            finally:
                self.comminfo[None] = default

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
            self.p.ctx.end()

    return SimpleNamespace(bt=bt, AlignedBroker=_AlignedBroker, ColumnFeed=_ColumnFeed, Bridge=_Bridge)


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
                      trade_from_ms: int | None = None, *, order_prefix: str = "o",
                      fee_model: FeeModel | None = None) -> BacktraderRun:
    """Run ``strategy`` over ``series`` in backtrader's Cerebro with our fill rules.

    Timing: decisions at each bar's close; market orders fill at the next bar's open
    (slipped), stops/limits inside the next bar's range; ``fee_bps`` per fill. Bars
    before ``trade_from_ms`` only warm the strategy up (orders discarded, no equity).
    Client order ids are ``order_prefix`` + a counter, as in the native engine.
    ``fee_model`` (default: the schedule ``config`` describes) sets backtrader's percentage
    commission per fill from its maker and taker rates.
    """
    if len(series) == 0:
        return BacktraderRun()
    lib = _backtrader()
    bt = lib.bt
    ctx = BacktraderContext(strategy, series, config, trade_from_ms, order_prefix, fee_model)
    cerebro = bt.Cerebro(stdstats=False, cheat_on_open=True, preload=True, runonce=True,
                         maxcpus=1, quicknotify=False)
    broker = lib.AlignedBroker()
    cerebro.setbroker(broker)
    broker.set_cash(config.cash_quote)
    for liquidity in (Liquidity.MAKER, Liquidity.TAKER):  # the taker scheme last: it stays the default
        broker.setcommission(commission=ctx.fee_model.rate(liquidity))
        broker.schemes[liquidity.value] = broker.comminfo[None]
    broker.set_coc(False)
    broker.set_checksubmit(False)
    broker.set_shortcash(True)
    if config.slippage_bps:
        broker.set_slippage_perc(config.slippage_bps / 10_000.0, slip_open=True, slip_limit=False,
                                 slip_match=True, slip_out=True)
    ts = series.ts_ms.astype("float64") / MS_PER_DAY + _EPOCH_ORDINAL
    columns = (ts.tolist(), series.open.tolist(), series.high.tolist(), series.low.tolist(),
               series.close.tolist(), series.volume.tolist())
    cerebro.adddata(lib.ColumnFeed(columns=columns, timeframe=bt.TimeFrame.Minutes,
                                compression=max(1, series.timeframe_ms // 60_000)))
    cerebro.addstrategy(lib.Bridge, ctx=ctx)
    cerebro.run()
    return ctx.events


class BacktraderContext(StrategyContext):
    """The ``ctx`` a strategy acts through inside backtrader (the :class:`strategies.base.Context` protocol).

    The order methods and their rules are :class:`engine.context.StrategyContext`'s, shared with
    the native engine. Reads (position, cash, equity) come from backtrader's broker; orders
    are held until the next bar's open, then sized with :func:`engine.sizing.plan_fill` and
    sent to backtrader (see module doc).
    """

    def __init__(self, strategy: Strategy, series: BarSeries, config: BrokerConfig,
                 trade_from_ms: int | None, order_prefix: str = "o", fee_model: FeeModel | None = None) -> None:
        super().__init__(config, trade_from_ms, order_prefix)
        self.strategy = strategy
        self.events = BacktraderRun()
        self._add_signal = self.events.signals.append
        self._ts = series.ts_ms.tolist()
        self._open = series.open.tolist()
        self._high = series.high.tolist()
        self._low = series.low.tolist()
        self._close = series.close.tolist()
        self._volume = series.volume.tolist()
        self.fee_model = config.fee_model() if fee_model is None else fee_model
        self._slippage = BpsSlippage(config.slippage_bps) if config.slippage_bps else None
        self._queued: list[Order] = []  # market orders decided at the last close
        self._priced: list[Order] = []  # live stop and limit orders
        self._sent: dict[int, tuple[object, Order]] = {}  # backtrader ref → (bt order, our order), this bar
        self._filled_groups: set[str] = set()
        self.portfolio = Portfolio(config.cash_quote)  # rebuilt from backtrader's fills: trades, bars held
        self._bt = None
        self._btlib = _backtrader().bt

    # ---- backtrader hooks ----------------------------------------------------------------
    def attach(self, bridge) -> None:
        self._bt = bridge
        self.begin()

    def on_open(self) -> None:
        """Bar t+1's open is known: size and send what was decided at bar t's close."""
        if not (self._queued or self._priced):
            return
        i = len(self._bt.data) - 1
        raw_open = self._open[i]
        position = self._bt.position
        pos, pos_price, cash = position.size, position.price, self._bt.broker.getcash()
        taker_rate = self.fee_model.rate(Liquidity.TAKER)
        for order in self._queued:
            plan = plan_fill(order, pos, cash, raw_open, taker_rate, self._slippage, self.config.long_only)
            if plan is None:
                self.events.order_status[order.client_id] = CANCELLED
                continue
            side, qty, price = plan
            qty = self._fit_cash(side, qty, price, pos, pos_price, cash, taker_rate)
            self._send(order, side, qty, self._btlib.Order.Market, None, None, Liquidity.TAKER)
            pos, pos_price, cash = _after_fill(side, qty, price, pos, pos_price, cash, taker_rate)
        self._queued = []
        leaders: dict[str, object] = {}
        for order in sorted(self._priced, key=priority):
            liquidity = fill_liquidity(order, raw_open, i == self._placed_bar[order.client_id] + 1)
            rate = self.fee_model.rate(liquidity)
            plan = plan_fill(order, pos, cash, fill_price_at(order, raw_open), rate, self._slippage,
                             self.config.long_only)
            if plan is None:
                continue
            side, qty, price = plan
            if order.target_fraction == 0.0 and side is not order.side:
                raise OrderRejected(f"{order.client_id}: a protective {order.type.value} {order.side.value} order "
                                    f"cannot close a {'long' if pos > 0 else 'short'} position in backtrader")
            qty = self._fit_cash(side, qty, price, pos, pos_price, cash, rate)
            keys = []
            if order.oco_group is not None:
                keys.append("group:" + order.oco_group)
            if order.target_fraction == 0.0:
                keys.append("protective")
            leader = next((leaders[k] for k in keys if k in leaders), None)
            exectype = self._btlib.Order.Stop if order.type is OrderType.STOP else self._btlib.Order.Limit
            sent = self._send(order, side, qty, exectype, order.price, leader, liquidity)
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
                    self.events.order_status[order.client_id] = REJECTED
                    self.events.rejected_orders += 1
            self._sent = {}
        if self._priced:
            self._priced, ended = settle(self._priced, flat=self._bt.position.size == 0.0,
                                         filled_groups=self._filled_groups, status=self.events.order_status,
                                         bar_index=i, placed_bar=self._placed_bar)
            self.events.order_status.update(ended)
        self._filled_groups.clear()
        bar = Bar(self._ts[i], self._open[i], self._high[i], self._low[i], self._close[i], self._volume[i])
        self.bar, self.bar_index, self._last_ts = bar, i, bar.ts_ms
        self.trading = self.trading or bar.ts_ms >= self.trade_from_ms  # type: ignore[operator]
        if self.equity_floor_ts is None:
            self.strategy.on_bar(bar, self)
        if self.trading:
            ev = self.events
            equity = broker.getvalue()
            for column, value in ((ev.equity_ts_ms, bar.ts_ms), (ev.equity_cash, broker.getcash()),
                                  (ev.equity_position, self._bt.position.size), (ev.equity_close, bar.close),
                                  (ev.equity_quote, equity)):
                column.append(value)
            if equity <= 0.0:
                self._hit_equity_floor(bar.ts_ms)

    def on_bt_order(self, bt_order) -> None:
        """Record backtrader's fills; cancellations are decided by our rules at the close."""
        status = bt_order.status
        if status == self._btlib.Order.Completed:
            _, order = self._sent.pop(bt_order.ref)
            i = len(self._bt.data) - 1
            liquidity = Liquidity(bt_order.info["liquidity"])
            # One fill per execution bit: ``executed.price`` is re-averaged as
            # (size·price)/size, which can move the price by an ulp.
            for bit in bt_order.executed.exbits:
                side = Side.BUY if bit.size > 0 else Side.SELL
                fill = Fill(order.client_id, self._ts[i], side, abs(bit.size), bit.price, bit.comm, order.reason,
                            liquidity)
                self.events.fills.append(fill)
                trade = self.portfolio.apply(fill, i)
                if trade is not None:
                    self.events.trades.append(trade)
            self.events.order_status[order.client_id] = FILLED
            if order.type is not OrderType.MARKET:
                self._priced.remove(order)
                if order.oco_group is not None:
                    self._filled_groups.add(order.oco_group)
        elif status in (self._btlib.Order.Margin, self._btlib.Order.Rejected):
            entry = self._sent.pop(bt_order.ref, None)
            if entry is not None:
                order = entry[1]
                self.events.order_status[order.client_id] = REJECTED
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
    def pending_orders(self) -> list[Order]:
        return self._queued + self._priced

    def cancel_all(self) -> None:
        for order in self._queued + self._priced:
            self.events.order_status[order.client_id] = CANCELLED
        self._queued = []
        self._priced = []

    # ---- internals ------------------------------------------------------------------------------
    def _accept(self, order: Order) -> None:
        (self._queued if order.type is OrderType.MARKET else self._priced).append(order)
        self.events.orders.append(order)
        self.events.order_status[order.client_id] = SUBMITTED

    def _send(self, order: Order, side: Side, qty: float, exectype, price: float | None, oco,
              liquidity: Liquidity):
        send = self._bt.buy if side is Side.BUY else self._bt.sell
        bt_order = send(size=qty, price=price, exectype=exectype, oco=oco, liquidity=liquidity.value)
        self._sent[bt_order.ref] = (bt_order, order)
        return bt_order

    def _fit_cash(self, side: Side, qty: float, price: float, pos: float, pos_price: float, cash: float,
                  rate: float) -> float:
        """Shave ``qty`` by ulps until backtrader's cash check (cash after an opening fill ≥ 0) passes."""
        if side is not Side.BUY or pos + qty <= 0.0:
            return qty
        for _ in range(64):
            if _bt_cash_after(qty, price, pos, pos_price, cash, rate) >= 0.0:
                return qty
            qty = math.nextafter(qty, 0.0)
        return qty


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
