"""The one retry helper: exponential back-off with a cap, longer on rate limits.

Every exchange call in the feeds goes through :func:`call_with_retry` (or, in
async code, through :meth:`RetryPolicy.delay_s`, so the back-off rule lives in one
place). Only :class:`~feeds.errors.RetryableFeedError` is retried; fatal errors and
anything unexpected propagate at once.

Waiting is interruptible: pass the process's stop event and a SIGTERM handler that
sets it ends the wait immediately with :class:`~feeds.errors.FeedStopped`.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from feeds.errors import FeedStopped, RateLimitedError, RetryableFeedError
from domain.redact import mask_text

T = TypeVar("T")

log = logging.getLogger("feeds.retry")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to keep trying a retryable call, and how long to wait in between.

    Delay before retry ``n`` (1-based) = ``min(max_delay_s, base_delay_s * multiplier**(n-1))``,
    spread by ±``jitter_ratio`` so many clients do not retry in lock-step. After a
    rate limit (HTTP 418/429):

    * with the exchange's own ``Retry-After`` hint, wait exactly that long (a shorter hint
      is honoured too), but at least ``retry_after_floor_s`` and at most ``max_delay_s``,
      plus up to ``jitter_ratio`` more (never less than the exchange asked for);
    * without a hint, at least ``rate_limit_delay_s``.
    """

    base_delay_s: float = 0.5  # first back-off
    multiplier: float = 2.0  # growth per attempt
    max_delay_s: float = 30.0  # cap on a single wait
    rate_limit_delay_s: float = 10.0  # minimum wait after HTTP 418/429 without a Retry-After hint
    retry_after_floor_s: float = 1.0  # never retry sooner than this after a rate limit, whatever the hint
    jitter_ratio: float = 0.1  # uniform ±10 % spread; 0 = deterministic
    max_attempts: int | None = 8  # total calls incl. the first; None = unlimited
    max_elapsed_s: float | None = None  # give up once this much time has passed; None = unlimited

    def delay_s(self, retry_number: int, error: BaseException | None = None) -> float:
        """Seconds to wait before retry ``retry_number`` (1 = first retry) after ``error``."""
        if isinstance(error, RateLimitedError) and error.retry_after_s is not None:
            delay = min(self.max_delay_s, max(self.retry_after_floor_s, error.retry_after_s))
            if self.jitter_ratio > 0:  # only later: retrying before Retry-After risks a ban (418)
                delay *= 1.0 + random.uniform(0.0, self.jitter_ratio)
            return delay
        delay = min(self.max_delay_s, self.base_delay_s * self.multiplier ** max(0, retry_number - 1))
        if isinstance(error, RateLimitedError):
            delay = max(delay, min(self.max_delay_s, self.rate_limit_delay_s))
        if self.jitter_ratio > 0:
            delay *= 1.0 + random.uniform(-self.jitter_ratio, self.jitter_ratio)
        return max(0.0, delay)


def interruptible_sleep(seconds: float, stop_event: threading.Event | None,
                        sleep: Callable[[float], object] | None = None) -> bool:
    """Wait ``seconds``; return True when ``stop_event`` is (or becomes) set.

    With a custom ``sleep`` (tests), that function does the waiting and the event is
    checked afterwards; otherwise the wait *is* ``stop_event.wait`` so a SIGTERM
    handler setting the event ends it at once.
    """
    if stop_event is not None and stop_event.is_set():
        return True
    if sleep is not None:
        sleep(seconds)
        return stop_event is not None and stop_event.is_set()
    if stop_event is not None:
        return stop_event.wait(max(0.0, seconds))
    time.sleep(max(0.0, seconds))
    return False


def call_with_retry(
    fn: Callable[[], T],
    *,
    what: str,
    policy: RetryPolicy = RetryPolicy(),
    stop_event: threading.Event | None = None,
    sleep: Callable[[float], object] | None = None,
    clock: Callable[[], float] = time.monotonic,
    logger: logging.Logger = log,
) -> T:
    """Call ``fn()`` until it returns, retrying :class:`RetryableFeedError` per ``policy``.

    ``what`` names the call in the one log line written per retry. When attempts or
    time run out, the last retryable error is re-raised (with a note saying so).
    Raises :class:`FeedStopped` if ``stop_event`` is set before or during a wait.
    """
    started = clock()
    attempt = 0
    while True:
        if stop_event is not None and stop_event.is_set():
            raise FeedStopped(f"stopped before {what}")
        attempt += 1
        try:
            return fn()
        except RetryableFeedError as exc:
            delay = policy.delay_s(attempt, exc)
            elapsed = clock() - started
            out_of_attempts = policy.max_attempts is not None and attempt >= policy.max_attempts
            out_of_time = policy.max_elapsed_s is not None and elapsed + delay > policy.max_elapsed_s
            if out_of_attempts or out_of_time:
                logger.error("%s failed after %d attempt(s) in %.1fs, giving up: %s",
                             what, attempt, elapsed, _short(exc))
                exc.add_note(f"gave up on {what} after {attempt} attempt(s), {elapsed:.1f}s")
                raise
            limit = "" if policy.max_attempts is None else f"/{policy.max_attempts}"
            logger.warning("%s failed (%s: %s); retry %d%s in %.2fs",
                           what, type(exc).__name__, _short(exc), attempt, limit, delay)
            if interruptible_sleep(delay, stop_event, sleep):
                raise FeedStopped(f"stopped while waiting to retry {what}") from exc


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(mask_text(str(exc)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
