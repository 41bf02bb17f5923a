"""The Python API (for notebooks): run a backtest or a sweep, open a stored run, get pandas objects back.

    from app.api import backtest, open_run, sweep
    bt = backtest("btc_1h.csv.gz", "zscore", {"window": 20, "entry_z": 1.5})
    bt.metrics["sharpe"], bt.buy_and_hold["sharpe"]
    bt.equity.plot(); bt.benchmark.plot()          # pandas Series indexed by UTC time
    bt.trades.head()                               # one row per closed round trip
    sw = sweep(["btc_1h.csv.gz"], "zscore", grid={"window": [20, 50], "entry_z": [1.5, 2, 2.5]}, db="sweeps.db")
    sw.runs.sort_values("sharpe").tail(), sw.deflated_sharpe, sw.pbo

Same engine, fill rules and storage as the command-line tools (which call the
same ``app`` functions): decisions at a bar's close, market fills at the next
bar's open, ``fee_bps`` of notional per fill.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from app.backtest import BacktestOutcome, BacktestRequest, execute
from app.stored_backtest import run_and_store
from app.data import load_window
from engine.broker import BrokerConfig
from engine.metrics import BuyAndHoldInputs, buy_and_hold_curve, buy_and_hold_equity
from domain.series import BarSeries
from feeds.validation import DataError
from store.db import init_db
from store.repository import find_run, load_run_columns, load_trades

TRADE_COLUMNS = ["side", "qty", "entry_time", "exit_time", "entry_price", "exit_price", "gross_pnl", "fees", "pnl",
                 "return_pct", "exit_reason", "bars_held"]


@dataclass(frozen=True)
class BacktestResult:
    """A run as pandas objects: equity and buy-and-hold equity (Series), trades (DataFrame), metrics (dict)."""

    equity: pd.Series  # equity in quote currency at each bar close, indexed by the bar's open time (UTC)
    benchmark: pd.Series  # buy-and-hold equity on the same bars, same fee and slippage
    trades: pd.DataFrame  # closed round trips, net of fees
    metrics: dict[str, Any]  # the keys of run_backtest.py --json
    buy_and_hold: dict[str, Any]
    params: dict[str, Any]  # every strategy parameter, resolved
    run_id: str | None = None  # set when stored


@dataclass(frozen=True)
class SweepResult:
    runs: pd.DataFrame  # one row per run: run_id, swept parameters, data, seed, status, metrics
    best: dict[str, Any] | None
    deflated_sharpe: float | None
    pbo: float | None
    summary: dict[str, Any]  # exactly what run_sweep.py --json prints


def backtest(data: str | Path | pd.DataFrame | BarSeries, strategy: str = "zscore",
             params: Mapping[str, Any] | None = None, *, cash: float = 100_000.0, fee_bps: float = 10.0,
             slippage_bps: float = 0.0, long_only: bool = False, start: int | None = None, end: int | None = None,
             trade_from: int | None = None, timeframe: str | None = None, db: str | None = None,
             name: str | None = None) -> BacktestResult:
    """Backtest ``strategy`` with ``params`` (names as ``run_backtest.py --param``) on ``data``.

    ``data``: a candle file, a DataFrame with timestamp (epoch ms) / open / high /
    low / close / volume columns, or a BarSeries. Times are epoch ms UTC. With
    ``db`` the run is stored exactly as ``run_backtest.py`` stores it.
    """
    series = _series(data, start, end, timeframe)
    request = BacktestRequest(strategy, dict(params or {}), BrokerConfig(cash, fee_bps, slippage_bps, long_only),
                              trade_from_ms=trade_from)
    if db is None:
        return _result(execute(request, series), None)
    engine = init_db(db)
    try:
        run_id, outcome = run_and_store(engine, request, series, name=name)
    finally:
        engine.dispose()  # a notebook keeps no connection (nor a SQLite file's WAL) open after the call
    return _result(outcome, run_id)


def open_run(db: str, run: str) -> BacktestResult:
    """A stored run (id, unique id prefix or name) as the same pandas objects.

    The benchmark is the stored buy-and-hold baseline's curve, redrawn from the
    stored closes and the baseline's stored inputs.
    """
    engine = init_db(db, read_only=True)
    try:
        row = find_run(engine, run)
        if row is None:
            raise DataError(f"no run has the id, unique id prefix or name {run!r}")
        cols = load_run_columns(engine, row.id)
        trades = pd.DataFrame(load_trades(engine, row.id))
    finally:
        engine.dispose()
    close = np.asarray(cols["close"], dtype=float)
    params = row.params or {}
    stored = (row.report or {}).get("buy_and_hold_inputs")
    if stored:  # the stored baseline, exactly
        bench = buy_and_hold_curve(close, BuyAndHoldInputs.from_dict(stored)).equity_quote
    else:  # older runs: entered at the first close (backtests store closes, not opens)
        bench = buy_and_hold_equity(np.concatenate((close[:1], close[:-1])), close, row.initial_cash,
                                    float(params.get("fee_bps", 10.0)), float(params.get("slippage_bps", 0.0)))
    index = _index(np.asarray(cols["ts"], dtype=np.int64))
    trades = trades.rename(columns={"entry_ts": "entry_time", "exit_ts": "exit_time"})
    return BacktestResult(pd.Series(cols["equity"], index=index, name="equity", dtype=float),
                          pd.Series(bench, index=index, name="buy_and_hold"), _trade_frame(trades),
                          row.metrics or {}, (row.report or {}).get("buy_and_hold") or {},
                          params.get("strategy_params") or {}, row.id)


def sweep(data: Sequence[str | Path], strategy: str = "zscore", *, grid: Mapping[str, Sequence[Any]] | None = None,
          params: Mapping[str, Any] | None = None, search_space: Mapping[str, tuple] | None = None,
          trials: int | None = None, seeds: Sequence[int] | None = None, workers: int | None = None,
          scheduler: str | None = None, db: str = "sweeps.db", name: str | None = None,
          select_until: int | None = None, metric: str = "sharpe", cash: float = 100_000.0,
          fee_bps: float = 10.0, slippage_bps: float = 0.0, long_only: bool = False,
          store_orders: bool = False, progress: bool = True) -> SweepResult:
    """Run (or, with the same ``name``, resume) a sweep; the same engine as ``run_sweep.py``.

    ``grid``: {name: [values]} (strategy parameters plus fee_bps, slippage_bps);
    or ``search_space``: {name: (low, high)} or (low, high, "log") with ``trials``
    for an Optuna search. ``data`` are file paths: workers load them themselves.
    ``store_orders``: also store each trial's orders and fills (``run_sweep.py --store-orders``).
    """
    from app.registry import get_spec
    from app.sweep.driver import SearchSpec, SweepRequest
    from app.sweep.plan import SearchDim, all_params
    from app.sweep.progress import SweepProgress
    from app.sweep.session import run_sweep

    spec = get_spec(strategy)
    names = all_params(spec.params())
    typed_grid = {k: [names[k].coerce(v) for v in values] for k, values in (grid or {}).items() if k in names}
    unknown = set(grid or {}) - set(names)
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)}; valid: {', '.join(sorted(names))}")
    search = None
    if search_space:
        dims = tuple(SearchDim(k, float(v[0]), float(v[1]), len(v) > 2 and v[2] == "log", names[k].kind == "int")
                     for k, v in search_space.items())
        search = SearchSpec("optuna", int(trials or 20), dims)
    request = SweepRequest(name=name or time.strftime("sweep-%Y%m%d-%H%M%S", time.gmtime()), strategy=strategy,
                           data=tuple(str(d) for d in data), grid=typed_grid, fixed=dict(params or {}),
                           search=search, seeds=tuple(seeds) if seeds else None, cash_quote=cash, fee_bps=fee_bps,
                           slippage_bps=slippage_bps, long_only=long_only, select_until_ms=select_until,
                           metric=metric, store_orders=store_orders)
    with SweepProgress(metric, enabled=progress) as bar:
        summary = run_sweep(request, db, workers=workers, scheduler=scheduler, progress=bar)
    rows = [{"run_id": r["run_id"], **r["params"], "data": r["data"], "seed": r["seed"], "status": r["status"],
             **r["metrics"]} for r in summary["runs"]]
    return SweepResult(pd.DataFrame(rows), summary["best"], summary["deflated_sharpe"], summary["pbo"], summary)


def _series(data: Any, start: int | None, end: int | None, timeframe: str | None) -> BarSeries:
    if isinstance(data, BarSeries):
        return data.between(start, end)
    if isinstance(data, pd.DataFrame):
        frame = data.reset_index() if "timestamp" not in data.columns else data
        ts = pd.to_numeric(frame["timestamp"]).to_numpy(dtype=np.int64)
        if len(ts) > 1 and np.any(np.diff(ts) <= 0):
            raise DataError("DataFrame: timestamps must be strictly increasing")
        cols = [frame[c].to_numpy(dtype=float) for c in ("open", "high", "low", "close", "volume")]
        tf = int(np.median(np.diff(ts))) if len(ts) > 1 else 3_600_000
        return BarSeries(ts, *cols, timeframe_ms=tf, source="DataFrame").between(start, end)
    return load_window(str(data), start, end, timeframe, quiet=True)


def _index(ts: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(ts, unit="ms", utc=True), name="time")


def _trade_frame(trades: pd.DataFrame) -> pd.DataFrame:
    if trades.empty:
        return pd.DataFrame(columns=TRADE_COLUMNS)
    for col in ("entry_time", "exit_time"):
        trades[col] = pd.to_datetime(trades[col], unit="ms", utc=True)
    return trades[[c for c in TRADE_COLUMNS if c in trades.columns]]


def _result(outcome: BacktestOutcome, run_id: str | None) -> BacktestResult:
    ev = outcome.result.events
    index = _index(np.asarray(ev.equity_ts_ms, dtype=np.int64))
    bench = outcome.result.baseline.curve.equity_quote  # the stored baseline's curve, same traded bars
    trades = pd.DataFrame([{"side": t.side, "qty": t.qty, "entry_time": t.entry_ts_ms, "exit_time": t.exit_ts_ms,
                            "entry_price": t.entry_price, "exit_price": t.exit_price,
                            "gross_pnl": t.gross_pnl_quote, "fees": t.fees_quote, "pnl": t.pnl_quote,
                            "return_pct": t.return_pct, "exit_reason": t.exit_reason, "bars_held": t.bars_held}
                           for t in ev.trades])
    return BacktestResult(pd.Series(ev.equity_quote, index=index, name="equity", dtype=float),
                          pd.Series(bench[:len(index)], index=index[:len(bench)], name="buy_and_hold"),
                          _trade_frame(trades), outcome.metrics, outcome.result.buy_and_hold.to_dict(), outcome.params,
                          run_id)
