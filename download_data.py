#!/usr/bin/env python3
"""Download closed OHLCV candles from any ccxt exchange into a validated CSV.gz or Parquet file.

Incremental: when the output file already exists, only candles after its last row are
fetched (and the file is replaced atomically, so an interrupted download keeps every
complete page and the next call resumes). Candles still open by the exchange's clock are
never written. Gaps the exchange has are kept as gaps and reported, never filled.

Time bounds: --since is inclusive, --until is exclusive (candle open times, UTC).

Examples:
  python download_data.py --exchange binance --symbol BTC/USDT --timeframe 1h --out btc_1h.csv.gz
  python download_data.py --exchange bybit --symbol ETH/USDT --timeframe 4h --since 2022-01-01 --out eth.parquet
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.args import CliParser, UsageError, http_url, number, print_error, symbol, time_text, timeframe
from domain.strict_json import dumps_strict
from domain.times import parse_time_ms, timeframe_ms
from feeds.errors import FatalFeedError, FeedError
from feeds.validation import DataError

OUTPUT_SUFFIXES = (".csv", ".csv.gz", ".parquet")


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exchange", default="binance", help="ccxt exchange id (default %(default)s)")
    p.add_argument("--symbol", type=symbol, default="BTC/USDT", help="market symbol in ccxt form (default %(default)s)")
    p.add_argument("--timeframe", type=timeframe, default="1h", help="candle timeframe, e.g. 1m, 15m, 1h, 4h, 1d (default %(default)s)")
    p.add_argument("--since", type=time_text("--since"), help="first candle open time, inclusive (ISO-8601 UTC or epoch ms); "
                                   "default: the exchange's first candle, or the end of --out")
    p.add_argument("--until", type=time_text("--until"), help="stop before this open time, exclusive (default: the last closed candle)")
    p.add_argument("--out", help="output file: .csv, .csv.gz or .parquet "
                                 "(default data_cache/EXCHANGE_SYMBOL_TIMEFRAME.csv.gz)")
    p.add_argument("--exchange-url", type=http_url, help="override the exchange's REST base URL (a proxy or a test server)")
    p.add_argument("--timeout-ms", type=number(int, lo=1, hi=600_000), default=10_000,
                   help="HTTP timeout per request in ms, in [1, 600000] (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print a JSON summary (file, rows, span, gaps) on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        request = _validated(args)
    except (UsageError, ValueError) as exc:
        return print_error(exc)
    from feeds.download import download_history  # ccxt loads only for a valid request
    from feeds.files import load_bars

    try:
        path = download_history(args.exchange, args.symbol, args.timeframe, request["out"],
                                exchange_url=args.exchange_url, since_ms=request["since_ms"],
                                until_ms=request["until_ms"], progress=not (args.quiet or args.json),
                                timeout_ms=args.timeout_ms)
        series = load_bars(path, timeframe_ms(args.timeframe))
    except (FatalFeedError, DataError) as exc:
        return print_error(exc)
    except FeedError as exc:
        return print_error(f"the exchange could not be reached: {exc}", status=1)
    except KeyboardInterrupt:
        return print_error("interrupted; complete pages were kept and the next call resumes", status=130)
    gaps = series.gaps()
    summary = {
        "file": str(path), "exchange": args.exchange, "symbol": args.symbol, "timeframe": args.timeframe,
        "rows": len(series), "first_ts": int(series.ts_ms[0]), "last_ts": int(series.ts_ms[-1]),
        "gaps": gaps.count, "missing_candles": gaps.missing_bars,
    }
    if args.json:
        print(dumps_strict(summary))
    elif not args.quiet:
        print(f"{path}: {len(series):,} candles, {gaps.describe()}")
    return 0


def _validated(args: argparse.Namespace) -> dict:
    """Every argument checked before any request is made or any file is touched."""
    if "/" not in args.symbol:
        raise ValueError(f"--symbol: {args.symbol!r} is not a ccxt symbol such as BTC/USDT")
    since_ms = parse_time_ms(args.since, "--since")
    until_ms = parse_time_ms(args.until, "--until")
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        raise ValueError("--until must be after --since")
    if args.out:
        out = Path(args.out)
    else:
        from feeds.default_data import default_cache_path

        out = default_cache_path(args.exchange, args.symbol, args.timeframe)
    if not out.name.lower().endswith(OUTPUT_SUFFIXES):
        raise ValueError(f"--out: {out} must end in .csv, .csv.gz or .parquet")
    if out.exists() and out.is_dir():
        raise ValueError(f"--out: {out} is a directory")
    return {"since_ms": since_ms, "until_ms": until_ms, "out": out}


if __name__ == "__main__":
    sys.exit(main())
