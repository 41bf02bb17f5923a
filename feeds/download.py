"""Historical candle downloader with an incremental, atomically written CSV(.gz) cache.

``download_history`` pages through ``fetch_ohlcv`` (1000 candles per request) from
``since_ms`` (default: the exchange's first candle, asked for with ``since=0``)
up to ``until_ms`` (exclusive) or the last candle *closed by the exchange's
clock*. A second call resumes after the last cached candle. Every page is
validated (``feeds/validation.py``); gaps the exchange has are kept as gaps and
reported, never filled.

Cache file: ``timestamp,open,high,low,close,volume`` (timestamp = open time, ms
UTC), gzip when the name ends in ``.gz``, a Parquet table (int64 ``timestamp``,
float64 prices) when it ends in ``.parquet``. Writes go to a temp file in the same
folder that replaces the cache with ``os.replace`` only once complete, so a
crash or Ctrl-C never leaves a torn file: candles fetched before an error are
still committed (complete rows only), and the next run resumes from there.
"""
from __future__ import annotations

import gzip
import io
import logging
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

from domain.types import Bar
from domain.times import floor_to_timeframe, is_aligned, ms_to_text, timeframe_ms
from feeds.ccxt_feed import CcxtCandleClient
from feeds.retry import RetryPolicy, call_with_retry
from feeds.files import load_bars

log = logging.getLogger("feeds.download")

CSV_HEADER = "timestamp,open,high,low,close,volume"
DOWNLOAD_RETRY_POLICY = RetryPolicy(base_delay_s=1.0, max_delay_s=30.0, rate_limit_delay_s=30.0,
                                    max_attempts=8)


def download_history(exchange_id: str, symbol: str, timeframe: str, cache_path: str | Path,
                     exchange_url: str | None = None, since_ms: int | None = None,
                     until_ms: int | None = None, progress: bool = True, *,
                     timeout_ms: int = 10_000, page_limit: int = 1000,
                     retry_policy: RetryPolicy = DOWNLOAD_RETRY_POLICY,
                     stop_event: threading.Event | None = None,
                     client: CcxtCandleClient | None = None) -> Path:
    """Bring ``cache_path`` up to date with closed candles in ``[since_ms, until_ms)``; return it.

    If the cache starts after ``since_ms`` it is rebuilt from ``since_ms``; otherwise
    only candles after its last row are fetched. ``progress`` writes a status line to
    stderr (rows and date reached). Raises FatalFeedError (bad symbol, ...),
    RetryableFeedError once ``retry_policy`` gives up, or DataError for a corrupt cache.
    """
    path = Path(cache_path)
    tf_ms = timeframe_ms(timeframe)
    if since_ms is not None and not is_aligned(since_ms, tf_ms):
        since_ms = floor_to_timeframe(since_ms, tf_ms) + tf_ms
    cached = _cache_span(path, tf_ms) if path.exists() else None
    if cached is not None and since_ms is not None and cached[0] > since_ms:
        log.warning("%s starts at %d, after the requested %d: rebuilding it", path, cached[0], since_ms)
        cached = None
    cursor = (cached[1] + tf_ms) if cached is not None else (since_ms if since_ms is not None else 0)
    if since_ms is not None:
        cursor = max(cursor, since_ms)

    own_client = client is None
    client = client or CcxtCandleClient.connect(exchange_id, exchange_url, timeout_ms)
    meter = _Progress(f"{exchange_id} {symbol} {timeframe}", tf_ms, enabled=progress)
    retry_kw: dict[str, Any] = {"policy": retry_policy, "stop_event": stop_event, "logger": log}
    writer: _CacheWriter | None = None
    last_ts = cached[1] if cached is not None else None
    gaps: list[tuple[int, int]] = []
    try:
        call_with_retry(lambda: client.check_symbol(symbol), what=f"load_markets {exchange_id}", **retry_kw)
        while until_ms is None or cursor < until_ms:
            server_now = call_with_retry(client.server_time_ms, what="fetch_time", **retry_kw)
            page = call_with_retry(
                lambda: client.fetch_closed_candles(symbol, timeframe, cursor, page_limit,
                                                    server_time_ms=server_now),
                what=f"fetch_ohlcv {symbol} {timeframe} since={cursor}", **retry_kw)
            page = [b for b in page if b.ts_ms >= cursor and (until_ms is None or b.ts_ms < until_ms)]
            if not page:
                break
            if writer is None:
                writer_cls = _ParquetCacheWriter if _is_parquet(path) else _CacheWriter
                writer = writer_cls(path, keep_existing=cached is not None)
            for bar in page:
                if last_ts is not None and bar.ts_ms > last_ts + tf_ms:
                    gaps.append((last_ts + tf_ms, bar.ts_ms))
                last_ts = bar.ts_ms
            writer.write(page)
            cursor = page[-1].ts_ms + tf_ms
            meter.update(writer.rows, page[-1].ts_ms, until_ms if until_ms is not None else server_now)
    except BaseException:
        if writer is not None:
            writer.commit()  # keep every complete page fetched so far; next run resumes
            meter.done(writer.rows, gaps, interrupted=True)
        raise
    finally:
        if own_client:
            client.close()
    if writer is not None:
        writer.commit()
        meter.done(writer.rows, gaps)
    else:
        meter.done(0, gaps)
    return path


def read_cache(path: str | Path, timeframe_ms: int | None = None) -> list[Bar]:
    """Load a cache file written by :func:`download_history` through the one candle loader
    (:func:`feeds.files.load_bars`: every row validated, bad rows named by file and line)."""
    return list(load_bars(path, timeframe_ms).iter_bars())


# ---------------------------------------------------------------------- internals
def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() == ".parquet"


def _cache_span(path: Path, tf_ms: int) -> tuple[int, int] | None:
    """(first, last) open time in an existing cache (validated whole); None if it has no rows."""
    series = load_bars(path, tf_ms)
    return (int(series.ts_ms[0]), int(series.ts_ms[-1])) if len(series) else None


class _CacheWriter:
    """Appends rows to a temp copy of the cache; :meth:`commit` atomically replaces the cache.

    gzip: the old file's bytes are copied as they are and new rows go into a second gzip
    member (multi-member gzip files are standard; gzip, pandas and zcat read them whole).
    """

    def __init__(self, path: Path, keep_existing: bool) -> None:
        self.path = path
        self.rows = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        raw = open(self.tmp, "wb")
        if keep_existing:
            with open(path, "rb") as src:
                shutil.copyfileobj(src, raw)
        self._raw = raw
        self._gz = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if path.suffix == ".gz" else None
        self._text = io.TextIOWrapper(self._gz if self._gz is not None else raw, encoding="ascii",
                                      newline="\n", write_through=True)
        if not keep_existing:
            self._text.write(CSV_HEADER + "\n")
        self._committed = False

    def write(self, bars: list[Bar]) -> None:
        self._text.write("".join(f"{b.ts_ms},{b.open!r},{b.high!r},{b.low!r},{b.close!r},{b.volume!r}\n"
                                 for b in bars))
        self.rows += len(bars)

    def commit(self) -> None:
        if self._committed:
            return
        self._committed = True
        try:
            self._text.flush()
            self._text.detach()
            if self._gz is not None:
                self._gz.close()
            self._raw.flush()
            os.fsync(self._raw.fileno())
            self._raw.close()
            os.replace(self.tmp, self.path)
        except BaseException:
            self._raw.close()
            self.tmp.unlink(missing_ok=True)
            raise


class _ParquetCacheWriter:
    """Collects new rows; :meth:`commit` writes old + new rows to a temp file and swaps it in.

    Parquet files cannot be appended to, so each commit rewrites the file; candle files are
    small (a million rows is ~40 MB), and the swap keeps the all-or-nothing guarantee.
    """

    def __init__(self, path: Path, keep_existing: bool) -> None:
        self.path = path
        self.rows = 0
        self._old = read_cache(path) if keep_existing else []
        self._new: list[Bar] = []
        self._committed = False
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")

    def write(self, bars: list[Bar]) -> None:
        self._new.extend(bars)
        self.rows += len(bars)

    def commit(self) -> None:
        if self._committed:
            return
        self._committed = True
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = self._old + self._new
        table = pa.table({
            "timestamp": pa.array([b.ts_ms for b in rows], pa.int64()),
            **{name: pa.array([getattr(b, name) for b in rows], pa.float64())
               for name in ("open", "high", "low", "close", "volume")},
        })
        try:
            pq.write_table(table, self.tmp)
            os.replace(self.tmp, self.path)
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise


class _Progress:
    """A rich progress bar on stderr over the span being fetched (first candle -> end), then one
    summary line; ``enabled=False`` keeps library callers and tests quiet."""

    def __init__(self, label: str, tf_ms: int, enabled: bool) -> None:
        self.label, self.tf_ms, self.enabled = label, tf_ms, enabled
        self._started = time.monotonic()
        self._bar: Any = None
        self._task: Any = None
        self._first_ts: int | None = None
        self._reached_ts: int | None = None

    def update(self, rows: int, reached_ts_ms: int, end_ms: int | None = None) -> None:
        if not self.enabled:
            return
        self._reached_ts = reached_ts_ms
        if self._bar is None:
            from rich.console import Console
            from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._first_ts = reached_ts_ms
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                 TextColumn("{task.fields[reached]}"), TextColumn("{task.fields[rows]} rows"),
                                 TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=None, reached="", rows="0")
        assert self._first_ts is not None
        total = None if end_ms is None else max(end_ms - self._first_ts, 1)
        self._bar.update(self._task, total=total, completed=reached_ts_ms - self._first_ts + self.tf_ms,
                         reached=ms_to_text(reached_ts_ms, zone=True), rows=f"{rows:,}")

    def done(self, rows: int, gaps: list[tuple[int, int]], interrupted: bool = False) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.stop()
        gap_text = ""
        if gaps:
            largest = max(b - a for a, b in gaps)
            gap_text = (f"; {len(gaps)} gap(s) in the exchange's data, largest "
                        f"{largest // self.tf_ms} missing candle(s)")
        state = "interrupted after" if interrupted else "done:"
        reached = "" if self._reached_ts is None else f", reached {ms_to_text(self._reached_ts, zone=True)}"
        sys.stderr.write(f"{self.label}: {state} {rows:,} new rows{reached} in "
                         f"{time.monotonic() - self._started:.1f}s{gap_text}\n")
        sys.stderr.flush()
