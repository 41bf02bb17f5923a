"""The project's own feed errors: what a caller may retry and what it must not.

Exchange libraries (ccxt) raise their own exception trees; the exchange edge
(``feeds/ccxt_feed.py``) translates them into these, so nothing above the feed
layer ever needs to know which library fetched the data (STYLE.md §8).

    FeedError
    ├── RetryableFeedError      network trouble, exchange busy, a bad response body
    │   └── RateLimitedError    the exchange asked us to slow down (HTTP 418/429)
    ├── FatalFeedError          retrying cannot help: bad symbol, bad request, bad keys
    └── FeedStopped             the stop event was set while waiting
"""
from __future__ import annotations


class FeedError(Exception):
    """Base class of every error raised by a market-data feed."""


class RetryableFeedError(FeedError):
    """A transient failure: the same call may succeed later (back off, then retry)."""


class RateLimitedError(RetryableFeedError):
    """The exchange throttled us. ``retry_after_s`` is its own hint, when it sent one."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class FatalFeedError(FeedError):
    """A permanent failure (unknown symbol, rejected request, bad credentials): do not retry."""


class FeedStopped(FeedError):
    """Raised out of a wait when the caller's stop event was set (e.g. on SIGTERM)."""
