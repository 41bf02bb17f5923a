"""Strategy names as the command line knows them → factories."""
from __future__ import annotations

from typing import Any, Callable

from strategies.base import Strategy
from strategies.buy_and_hold import BuyAndHold
from strategies.zscore import ZScoreConfig, ZScoreReversion


def _zscore(options: dict[str, Any]) -> Strategy:
    return ZScoreReversion(ZScoreConfig(long_only=bool(options.get("long_only", False))))


def _buyhold(options: dict[str, Any]) -> Strategy:
    return BuyAndHold()


def _score(options: dict[str, Any]) -> Strategy:
    from strategies.score_cli import make_score_strategy

    return make_score_strategy(options)


FACTORIES: dict[str, Callable[[dict[str, Any]], Strategy]] = {"score": _score, "zscore": _zscore,
                                                              "buyhold": _buyhold}


def make_strategy(name: str, options: dict[str, Any] | None = None) -> Strategy:
    if name not in FACTORIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(FACTORIES)}")
    return FACTORIES[name](options or {})
