"""Throughput of the z-score baseline: our engine vs backtrader (via the adapter) vs a bare loop.

    python -m bench.engine_throughput [--bars 1000000] [--bt-bars 200000] [--seed 0]

All on the same synthetic hourly bars (SYNTHETIC data), in one process:
(a) ours: ``Engine(ZScoreReversion()).run(series.iter_bars())`` — the bar-by-bar engine
    (what paper trading runs), Bar objects, signals and the per-bar equity curve included;
    and the backtest fast path (``prepare_backtest`` + ``Engine.run_series``: what
    ``run_backtest.py`` runs), whose events must be the same;
(b) backtrader 1.9.78.123 through ``engine.backtrader_adapter`` (~15k bars/s, so by
    default on the first ``--bt-bars`` bars only; throughput is compared in bars/s
    and parity is checked on that prefix);
(c) a bare Python loop over plain lists (``bench/reference_loop.py``).
Checks that all three make the same trades and final equity (exit status 1 if not),
and reports the process's peak memory (``ru_maxrss``) and how much our run raised it.
"""
from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.reference_loop import LoopResult, zscore_loop  # noqa: E402
from engine.backtrader_adapter import run_in_backtrader  # noqa: E402
from engine.broker import BrokerConfig  # noqa: E402
from engine.loop import Engine, EngineEvents  # noqa: E402
from domain.series import BarSeries  # noqa: E402
from feeds.synthetic import synthetic_bars  # noqa: E402
from strategies.zscore import ZScoreReversion  # noqa: E402

REL = 1e-9
TARGET_VS_BACKTRADER = 20.0


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _entries(events: EngineEvents) -> list[tuple[int, int, float, float]]:
    return [(f.ts_ms, f.side.sign, f.qty, f.price) for f in events.fills if f.reason == "entry"]


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def _same_entries(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        x[:2] == y[:2] and _rel(x[2], y[2]) <= REL and _rel(x[3], y[3]) <= REL for x, y in zip(a, b))


def _check(label: str, entries_a: list, equity_a: float, entries_b: list, equity_b: float) -> bool:
    rel = _rel(equity_a, equity_b)
    ok = _same_entries(entries_a, entries_b) and rel < REL
    print(f"  {label:44s} entries {len(entries_a):>7,} vs {len(entries_b):>7,}; "
          f"final equity rel diff {rel:.1e}: {'PASS' if ok else 'FAIL'}")
    return ok


class Timer:
    """Wall-clock and CPU seconds of a block (CPU time is steadier on a shared machine)."""

    def __enter__(self) -> "Timer":
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall_s = time.perf_counter() - self._wall
        self.cpu_s = time.process_time() - self._cpu


def run_ours(series: BarSeries, config: BrokerConfig) -> tuple[EngineEvents, Timer]:
    with Timer() as timer:
        events = Engine(ZScoreReversion(), config).run(series.iter_bars())
    return events, timer


def run_fast(series: BarSeries, config: BrokerConfig) -> tuple[EngineEvents, Timer]:
    with Timer() as timer:
        strategy = ZScoreReversion()
        strategy.prepare_backtest(series)
        events = Engine(strategy, config).run_series(series)
    return events, timer


def run_loop(series: BarSeries, config: BrokerConfig) -> tuple[LoopResult, Timer]:
    with Timer() as timer:
        result = zscore_loop(series.ts_ms.tolist(), series.open.tolist(), series.close.tolist(),
                             cash_quote=config.cash_quote, fee_bps=config.fee_bps)
    return result, timer


def _first_difference(ours: list, loop: list, series: BarSeries) -> str:
    """Where two entry lists first differ, and the loop's order size there."""
    i = next((k for k, (a, b) in enumerate(zip(ours, loop)) if a[:2] != b[:2]), min(len(ours), len(loop)))
    if i >= len(loop):
        return f"the loop stops after {len(loop):,} entries"
    ts, _, qty, price = loop[i]
    bar = int((ts - int(series.ts_ms[0])) // series.timeframe_ms)
    why = " (engine.broker ignores target orders under 1e-12 base units)" if qty <= 1e-12 else ""
    return (f"entry #{i + 1:,} differs (bar {bar:,}); the loop trades {qty:.3g} base "
            f"(notional {qty * price:.3g} quote) there{why}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000, help="synthetic hourly bars (default 1,000,000)")
    parser.add_argument("--bt-bars", type=int, default=200_000,
                        help="bars for backtrader, a prefix of --bars (default 200,000; 0 = all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.bars < 100:
        parser.error("--bars must be at least 100")
    bt_bars = args.bars if args.bt_bars <= 0 else min(args.bt_bars, args.bars)
    config = BrokerConfig()  # 100,000 cash, 10 bps fee, no slippage

    series = synthetic_bars(args.bars, args.seed)
    prefix = series.take(slice(0, bt_bars))
    print(f"z-score baseline, {args.bars:,} SYNTHETIC hourly bars (seed {args.seed}), fee {config.fee_bps:g} bps; "
          f"Python {sys.version.split()[0]}")
    if bt_bars < args.bars:
        print(f"backtrader runs on the first {bt_bars:,} bars only (--bt-bars); it is compared in bars/s, "
              f"and its trades on that prefix")

    # Each run starts on a clean heap: a previous run's million live event objects would
    # make the cyclic GC slower for whatever runs next.
    rss_before = _peak_rss_mib()
    ours, t_ours = run_ours(series, config)
    rss_ours = _peak_rss_mib()
    ours_entries, ours_equity = _entries(ours), ours.equity_quote[-1]
    del ours
    gc.collect()
    gc.disable()
    try:
        _, t_ours_nogc = run_ours(series, config)
    finally:
        gc.enable()
    gc.collect()
    fast, t_fast = run_fast(series, config)
    fast_entries, fast_equity = _entries(fast), fast.equity_quote[-1]
    del fast
    gc.collect()
    loop, t_loop = run_loop(series, config)
    gc.collect()
    with Timer() as t_bt:
        bt_run = run_in_backtrader(ZScoreReversion(), prefix, config)
    bt_entries, bt_equity = _entries(bt_run), bt_run.equity_quote[-1]
    bt_trips = [(t.entry_ts_ms, t.exit_ts_ms, t.side) for t in bt_run.trades]
    bt_rejected = bt_run.rejected_orders
    del bt_run
    gc.collect()
    ours_prefix, _ = run_ours(prefix, config)
    loop_prefix, _ = run_loop(prefix, config)

    rows = [
        ("ours: Engine.run(iter_bars())", args.bars, t_ours, ours_entries, ours_equity),
        ("ours, cyclic GC off (info)", args.bars, t_ours_nogc, None, None),
        ("ours: backtest fast path", args.bars, t_fast, fast_entries, fast_equity),
        ("backtrader via adapter", bt_bars, t_bt, bt_entries, bt_equity),
        ("bare Python loop", args.bars, t_loop, loop.entries, loop.final_equity_quote),
    ]
    print(f"\n{'engine':30s} {'bars':>10s} {'wall s':>7s} {'CPU s':>7s} {'bars/s':>10s} {'CPU bars/s':>10s} "
          f"{'entries':>8s} {'final equity':>13s}")
    for name, n, timer, entries, equity in rows:
        extra = f" {len(entries):>8,} {equity:>13.6g}" if entries is not None else ""
        print(f"{name:30s} {n:>10,} {timer.wall_s:>7.2f} {timer.cpu_s:>7.2f} {n / timer.wall_s:>10,.0f} "
              f"{n / timer.cpu_s:>10,.0f}{extra}")
    for label, attr in (("wall clock", "wall_s"), ("CPU time", "cpu_s")):
        speed_ours = args.bars / getattr(t_ours, attr)
        vs_bt = speed_ours / (bt_bars / getattr(t_bt, attr))
        print(f"{label + ':':12s} ours / backtrader = {vs_bt:5.1f}x (target >= {TARGET_VS_BACKTRADER:g}x: "
              f"{'met' if vs_bt >= TARGET_VS_BACKTRADER else 'MISSED'}); "
              f"ours / bare loop = {speed_ours / (args.bars / getattr(t_loop, attr)):.2f}x; "
              f"GC off: ours / backtrader = "
              f"{args.bars / getattr(t_ours_nogc, attr) / (bt_bars / getattr(t_bt, attr)):.1f}x; "
              f"fast path / backtrader = {args.bars / getattr(t_fast, attr) / (bt_bars / getattr(t_bt, attr)):.1f}x")

    print("\nparity (same entries: time, side, qty and price to 1e-9; final equity to 1e-9):")
    ok = _check(f"ours vs bare loop, {args.bars:,} bars", ours_entries, ours_equity,
                loop.entries, loop.final_equity_quote)
    if not ok:
        print(f"    {_first_difference(ours_entries, loop.entries, series)}")
    ok &= _check(f"fast path vs bar by bar, {args.bars:,} bars", fast_entries, fast_equity, ours_entries,
                 ours_equity)
    ok &= _check(f"ours vs backtrader, {bt_bars:,} bars", _entries(ours_prefix), ours_prefix.equity_quote[-1],
                 bt_entries, bt_equity)
    ok &= _check(f"bare loop vs backtrader, {bt_bars:,} bars", loop_prefix.entries,
                 loop_prefix.final_equity_quote, bt_entries, bt_equity)
    same_trades = [(t.entry_ts_ms, t.exit_ts_ms, t.side) for t in ours_prefix.trades] == bt_trips
    print(f"  {'ours vs backtrader round trips (entry/exit/side)':44s} "
          f"{len(ours_prefix.trades):,} vs {len(bt_trips):,}: {'PASS' if same_trades else 'FAIL'}")
    ok &= same_trades and bt_rejected == 0

    print(f"\nmemory: peak RSS {_peak_rss_mib():,.0f} MiB; before our engine ran {rss_before:,.0f} MiB, "
          f"after {rss_ours:,.0f} MiB (+{rss_ours - rss_before:,.0f} MiB for {args.bars:,} bars: "
          f"events incl. one signal and one equity point per bar)")
    print(f"\nparity: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
