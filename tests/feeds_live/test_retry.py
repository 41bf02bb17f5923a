"""The retry helper: back-off shape, rate limits, limits, stop event, one log line per retry."""
from __future__ import annotations

import logging
import threading
import time

import pytest

from feeds.errors import FatalFeedError, FeedStopped, RateLimitedError, RetryableFeedError
from feeds.retry import RetryPolicy, call_with_retry


def flaky(failures: list[Exception], result: str = "ok"):
    calls = {"n": 0}

    def fn() -> str:
        calls["n"] += 1
        if failures:
            raise failures.pop(0)
        return result

    return fn, calls


def test_exponential_backoff_capped_and_one_log_line_per_retry(caplog: pytest.LogCaptureFixture) -> None:
    policy = RetryPolicy(base_delay_s=1.0, multiplier=2.0, max_delay_s=5.0, jitter_ratio=0.0, max_attempts=10)
    waits: list[float] = []
    fn, calls = flaky([RetryableFeedError("boom")] * 5)
    with caplog.at_level(logging.WARNING, logger="feeds.retry"):
        assert call_with_retry(fn, what="op", policy=policy, sleep=waits.append) == "ok"
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert calls["n"] == 6
    retry_lines = [r for r in caplog.records if "retry" in r.getMessage()]
    assert len(retry_lines) == 5 and "op failed" in retry_lines[0].getMessage()


def test_rate_limit_waits_longer_and_honours_retry_after() -> None:
    policy = RetryPolicy(base_delay_s=0.1, max_delay_s=60.0, rate_limit_delay_s=10.0, jitter_ratio=0.0)
    waits: list[float] = []
    fn, _ = flaky([RateLimitedError("429"), RateLimitedError("418", retry_after_s=30.0),
                   RetryableFeedError("x")])
    call_with_retry(fn, what="op", policy=policy, sleep=waits.append)
    assert waits == [10.0, 30.0, 0.4]


def test_gives_up_after_max_attempts_with_last_error() -> None:
    policy = RetryPolicy(base_delay_s=0.0, jitter_ratio=0.0, max_attempts=3)
    fn, calls = flaky([RetryableFeedError(f"e{i}") for i in range(5)])
    with pytest.raises(RetryableFeedError, match="e2"):
        call_with_retry(fn, what="op", policy=policy, sleep=lambda s: None)
    assert calls["n"] == 3


def test_gives_up_after_max_elapsed() -> None:
    fake_now = [0.0]
    policy = RetryPolicy(base_delay_s=1.0, multiplier=1.0, jitter_ratio=0.0, max_attempts=None,
                         max_elapsed_s=3.5)
    fn, calls = flaky([RetryableFeedError("e")] * 10)

    def sleep(s: float) -> None:
        fake_now[0] += s

    with pytest.raises(RetryableFeedError):
        call_with_retry(fn, what="op", policy=policy, sleep=sleep, clock=lambda: fake_now[0])
    assert calls["n"] == 4  # t=0,1,2,3; the next wait would pass 3.5 s


def test_fatal_and_unexpected_errors_are_not_retried() -> None:
    for exc in (FatalFeedError("bad symbol"), KeyError("bug")):
        fn, calls = flaky([exc])
        with pytest.raises(type(exc)):
            call_with_retry(fn, what="op", sleep=lambda s: None)
        assert calls["n"] == 1


def test_stop_event_interrupts_a_long_wait_promptly() -> None:
    stop = threading.Event()
    policy = RetryPolicy(base_delay_s=30.0, jitter_ratio=0.0, max_attempts=None)
    fn, _ = flaky([RetryableFeedError("down")] * 3)
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    with pytest.raises(FeedStopped):
        call_with_retry(fn, what="op", policy=policy, stop_event=stop)
    assert time.monotonic() - started < 2.0
