"""End to end: ``run_backtest.py --strategy zscore`` (load + run + store) on SQLite and PostgreSQL.

    python bench/store_throughput.py [--bars 1000000] [--small 200000] [--bt-bars 100000] [--pg-url URL | --no-pg]

All in one run, on the same SYNTHETIC hourly bars written to CSV:
- each ``run_backtest.py`` is a fresh process, timed by wall clock, its peak RSS from ``wait4``;
- marginal throughput = (bars big − bars small) / (time big − time small): fixed costs (start-up,
  imports, schema creation) cancel out;
- the reference is backtrader's bars/s on the first ``--bt-bars`` bars, measured in this process
  through ``engine.backtrader_adapter`` (its loop alone, no file load or storage: the reference at
  its fastest, so the ratio is conservative), before each attempt and after the last, the
  fastest counting; each size runs ``--repeat`` times, interleaved with those, the fastest
  counting (a shared host's speed drifts by tens of percent within a minute);
- the store size of the 1M-bar run (SQLite file after a WAL checkpoint; PostgreSQL tables incl.
  indexes and TOAST), and the wall time of ``inspect_trades.py report RUN -o FILE.html`` on it
  (and of its equity export), each run ``--repeat`` times, the fastest counting.
PostgreSQL is a throwaway local cluster (testkit/pgserver.py) unless --pg-url names a server.
The machine's CPU may be shared: timings are noisy, repeat before trusting a small difference.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.backtrader_adapter import run_in_backtrader  # noqa: E402
from engine.broker import BrokerConfig  # noqa: E402
from feeds.synthetic import synthetic_bars  # noqa: E402
from strategies.zscore import ZScoreReversion  # noqa: E402

TARGET_VS_BACKTRADER = 20.0
TARGET_MB_PER_1M = 40.0
TARGET_REPORT_S = 3.0
TARGET_RSS_MB = 500.0


@dataclass
class Timed:
    wall_s: float
    peak_rss_mb: float
    stdout: str


# Runs a repo script as __main__ and, at exit, writes the process's peak RSS (VmHWM, kB) to a file.
# Measured inside the child: a forked child's rusage would also count the parent's pages at fork.
_LAUNCH = ("import atexit, os, runpy, sys\n"
           "def _hwm():\n"
           "    for line in open('/proc/self/status'):\n"
           "        if line.startswith('VmHWM:'):\n"
           "            open(os.environ['BENCH_HWM_FILE'], 'w').write(line.split()[1])\n"
           "atexit.register(_hwm)\n"
           "sys.argv = sys.argv[1:]\n"
           "runpy.run_path(sys.argv[0], run_name='__main__')\n")


def run_process(args: list[str]) -> Timed:
    """Run a Python script of the repo in a fresh process; wall time and that process's peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        hwm = Path(tmp) / "hwm"
        env = {**os.environ, "BENCH_HWM_FILE": str(hwm)}
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _LAUNCH, *args], cwd=ROOT, capture_output=True, text=True,
                              env=env)
        wall = time.perf_counter() - start
        peak = int(hwm.read_text()) / 1024.0 if hwm.exists() else float("nan")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return Timed(wall, peak, proc.stdout)


def sqlite_size_mb(path: Path) -> float:
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1e6


def pg_size_mb(url: str) -> float:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        size = conn.execute(text("SELECT sum(pg_total_relation_size(quote_ident(tablename))) FROM pg_tables "
                                 "WHERE schemaname = 'public'")).scalar()
    engine.dispose()
    return float(size or 0) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=200_000)
    parser.add_argument("--bt-bars", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pg-url", help="PostgreSQL server URL whose user may CREATE DATABASE")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each size per backend, interleaved; the fastest counts (default 3)")
    args = parser.parse_args(argv)
    if not 1000 <= args.small < args.bars:
        parser.error("need 1000 <= --small < --bars")

    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp:  # ~0.5 GB of CSV and databases
        return _measure(args, Path(tmp))


def _measure(args: argparse.Namespace, work: Path) -> int:
    series = synthetic_bars(args.bars, args.seed)
    files = {}
    for n in (args.small, args.bars):
        files[n] = work / f"bars_{n}.csv"
        series.take(slice(0, n)).to_frame().to_csv(files[n], index=False)
    print(f"z-score baseline, SYNTHETIC hourly bars (seed {args.seed}), CSV in, fee 10 bps; Python "
          f"{sys.version.split()[0]}; {os.cpu_count()} CPUs (shared: timings are noisy)")

    bt_n = min(args.bt_bars, args.bars)
    bt_series = series.take(slice(0, bt_n))

    def backtrader_rate() -> float:
        start = time.perf_counter()
        run_in_backtrader(ZScoreReversion(), bt_series, BrokerConfig())
        return bt_n / (time.perf_counter() - start)

    print(f"reference: backtrader (adapter, loop only, {bt_n:,} bars in memory), measured before each attempt "
          f"and after the last, interleaved with ours; the ratio uses its fastest\n")

    backends: list[tuple[str, object]] = [("sqlite", None)]
    server = None
    if not args.no_pg:
        try:
            from testkit.pgserver import PgServer, start_server

            server = PgServer(admin_url=args.pg_url) if args.pg_url else start_server()
            backends.append(("postgresql", server))
        except Exception as exc:  # PgUnavailable or a server that cannot be reached
            print(f"PostgreSQL skipped: {exc}\n")

    print(f"{'backend':11s} {'bars':>9s} {'wall s':>7s} {'bars/s':>9s} {'peak RSS MB':>11s} {'store MB':>9s}")
    failed = []
    try:
        for name, srv in backends:
            timings: dict[int, tuple] = {}
            peak_rss = 0.0  # the largest of every run of the big size (not only the fastest)
            bt_rates = []
            for attempt in range(args.repeat):  # bt, small, big, bt, small, big, ..., bt: a slow spell hits all
                bt_rates.append(backtrader_rate())
                for n in (args.small, args.bars):
                    if srv is None:
                        db_path = work / f"{name}_{n}_{attempt}.db"
                        url = str(db_path)
                    else:
                        url = srv.create_database("bench")  # type: ignore[attr-defined]
                    t = run_process(["run_backtest.py", "--strategy", "zscore", "--data", str(files[n]), "--db",
                                     url, "--json"])
                    run_id = json.loads(t.stdout)["run_id"]
                    size = sqlite_size_mb(db_path) if srv is None else pg_size_mb(url)
                    if n == args.bars:
                        peak_rss = max(peak_rss, t.peak_rss_mb)
                    if n not in timings or t.wall_s < timings[n][0].wall_s:
                        timings[n] = (t, url, run_id, size)
                    print(f"{name:11s} {n:>9,} {t.wall_s:>7.2f} {n / t.wall_s:>9,.0f} {t.peak_rss_mb:>11,.0f} "
                          f"{size:>9.1f}")
            bt_rates.append(backtrader_rate())
            bt_rate = max(bt_rates)
            print(f"backtrader before each attempt and after the last: {' / '.join(f'{r:,.0f}' for r in bt_rates)} "
                  "bars/s (the fastest counts)")
            (t_small, *_), (t_big, url, run_id, size) = timings[args.small], timings[args.bars]
            marginal = (args.bars - args.small) / max(t_big.wall_s - t_small.wall_s, 1e-9)
            report = work / f"report_{name}.html"
            # the fastest of --repeat, as for the runs: one write-back of the runs' files can stall one
            reports = [run_process(["inspect_trades.py", "--db", url, "report", run_id, "-o", str(report)])
                       for _ in range(args.repeat)]
            exports = [run_process(["inspect_trades.py", "--db", url, "equity", run_id, "--format", "csv"])
                       for _ in range(args.repeat)]
            t_report = min(reports, key=lambda t: t.wall_s)
            t_export = min(exports, key=lambda t: t.wall_s)
            per_1m = size * 1_000_000 / args.bars
            ratio = marginal / bt_rate
            checks = [("marginal vs backtrader", ratio >= TARGET_VS_BACKTRADER, f"{ratio:.1f}x (target >= 20x)"),
                      ("store per 1M bars", name != "sqlite" or per_1m <= TARGET_MB_PER_1M,
                       f"{per_1m:.1f} MB" + (" (target <= 40 MB)" if name == "sqlite" else "")),
                      ("report written", t_report.wall_s <= TARGET_REPORT_S,
                       f"{t_report.wall_s:.2f} s (target <= 3 s; each {' / '.join(f'{t.wall_s:.2f}' for t in reports)})"),
                      (f"peak RSS, {args.bars:,} bars", peak_rss <= TARGET_RSS_MB,
                       f"{peak_rss:,.0f} MB (target <= 500 MB)")]
            print(f"\n{name}: marginal {args.small:,} -> {args.bars:,} bars (fastest of {args.repeat} each): "
                  f"{marginal:,.0f} bars/s end to end")
            for label, ok, text in checks:
                print(f"  {label:24s} {text}: {'met' if ok else 'MISSED'}")
                if not ok:
                    failed.append(f"{name}: {label}")
            print(f"  equity export (csv, {args.bars:,} rows): {t_export.wall_s:.2f} s, "
                  f"{len(t_export.stdout) / 1e6:.0f} MB\n")
    finally:
        if server is not None:
            server.stop()
    print("targets: " + ("all met" if not failed else "MISSED: " + "; ".join(failed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
