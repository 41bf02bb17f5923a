"""Every strategy the tools know, registered once: factory, parameters, report section, model hooks.

The runners (backtest, paper, sweep) look a strategy up here and call its spec;
nothing else dispatches on a strategy's type. A strategy's module is imported
only when its spec is used, so a z-score run never imports torch (the score
strategy's module does).
"""
from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from domain.times import MS_PER_DAY
from strategies.params import ParamError, ParamSpec, build_config, config_params

if TYPE_CHECKING:
    from engine.backtest import BacktestResult
    from engine.broker import BrokerConfig
    from domain.series import BarSeries
    from domain.records import ModelVersionRecord
    from strategies.base import Strategy

ReportFn = Callable[["Strategy", "BarSeries", "BrokerConfig", "BacktestResult", "int | None"], dict[str, Any]]


@dataclass(frozen=True)
class StrategySpec:
    """How to build, parameterise and report one strategy. Hooks default to "nothing to do"."""

    name: str
    summary: str
    load_params: Callable[[], tuple[ParamSpec, ...]]  # lazy: may import the strategy's module
    factory: Callable[[Mapping[str, Any], int], "Strategy"]  # (resolved params, timeframe ms) → strategy
    aliases: Mapping[str, str] = field(default_factory=dict)  # older flag-style names → parameter names
    report: ReportFn | None = None  # extra report sections (e.g. baselines, IC, folds)
    model_versions: Callable[["Strategy"], Sequence["ModelVersionRecord"]] = lambda s: ()
    preload_models: Callable[["Strategy", list[tuple[bytes, Any, Any]]], int] = lambda s, stored: 0
    watch_models: Callable[["Strategy", Callable[..., None]], None] = lambda s, callback: None
    model_count: Callable[["Strategy", "BarSeries"], int] = lambda s, series: 0  # models a run will fit

    def params(self) -> tuple[ParamSpec, ...]:
        return _params_cached(self.name)

    def param_names(self) -> list[str]:
        return [p.name for p in self.params()]

    def resolve(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every parameter, typed: defaults overridden by ``given`` (text or Python values).

        Unknown names raise :class:`ParamError` listing the valid ones.
        """
        specs = {p.name: p for p in self.params()}
        values = {name: p.default for name, p in specs.items()}
        for raw_name, value in (given or {}).items():
            name = self.aliases.get(raw_name, raw_name)
            if name not in specs:
                valid = ", ".join(sorted(specs)) or "none"
                raise ParamError(f"unknown parameter {raw_name!r} for strategy {self.name!r}; valid: {valid}")
            values[name] = specs[name].coerce(value)
        return values

    def build(self, params: Mapping[str, Any], timeframe_ms: int) -> "Strategy":
        """A fresh strategy from resolved parameters (``resolve``'s output)."""
        return self.factory(params, timeframe_ms)

    def with_broker(self, given: Mapping[str, Any], *, long_only: bool, fee_bps: float,
                    slippage_bps: float, maker_fee_bps: float | None = None) -> dict[str, Any]:
        """``given`` plus what the strategy must know of the broker: the costs its entry rule assumes
        (always the broker's own, so the rule and the fills agree) and ``--long-only``."""
        out = dict(given)
        names = self.param_names()
        for name in ("fee_bps", "slippage_bps", "maker_fee_bps"):
            if name in out and name in names:
                raise ParamError(f"{name} is the broker's setting: use --{name.replace('_', '-')} "
                                 "(the strategy's cost rule always assumes the broker's own costs)")
        if long_only and "long_only" in names:
            out.setdefault("long_only", True)
        broker = {"fee_bps": fee_bps, "slippage_bps": slippage_bps,
                  "maker_fee_bps": fee_bps if maker_fee_bps is None else maker_fee_bps}
        out.update({name: value for name, value in broker.items() if name in names})
        return out


@functools.lru_cache(maxsize=None)
def _params_cached(name: str) -> tuple[ParamSpec, ...]:
    return SPECS[name].load_params()


def config_dict(strategy: "Strategy") -> dict[str, Any]:
    """The strategy's frozen config as JSON data (tuples as lists, as stored with every run)."""
    cfg = strategy.config
    return json.loads(json.dumps(asdict(cfg))) if cfg is not None and is_dataclass(cfg) else {}


# ---- z-score baseline ------------------------------------------------------------------------
def _zscore_params() -> tuple[ParamSpec, ...]:
    from strategies.zscore import ZScoreConfig

    return config_params(ZScoreConfig)


def _zscore(params: Mapping[str, Any], timeframe_ms: int) -> "Strategy":
    from strategies.zscore import ZScoreConfig, ZScoreReversion

    return ZScoreReversion(build_config(ZScoreConfig, params, _params_cached("zscore")))


# ---- buy-and-hold --------------------------------------------------------------------------
def _buyhold(params: Mapping[str, Any], timeframe_ms: int) -> "Strategy":
    from strategies.buy_and_hold import BuyAndHold

    return BuyAndHold()


# ---- score reversion (building one imports torch; its parameters do not) -------------------
def _score_params() -> tuple[ParamSpec, ...]:
    from strategies.score_config import DEFAULT_RETRAIN_BARS, DEFAULT_TRAIN_BARS, ScoreReversionConfig

    return config_params(ScoreReversionConfig, overrides={
        "train_days": {"default": None, "optional": True,
                       "doc": f"rolling training window in days (none: {DEFAULT_TRAIN_BARS:,} bars = 365 days "
                              "of 1h bars)"},
        "retrain_days": {"default": None, "optional": True,
                         "doc": f"days traded per frozen model (none: {DEFAULT_RETRAIN_BARS:,} bars = 30 days "
                                "of 1h bars)"},
    })


def _score(params: Mapping[str, Any], timeframe_ms: int) -> "Strategy":
    from strategies.score_config import DEFAULT_RETRAIN_BARS, DEFAULT_TRAIN_BARS, ScoreReversionConfig
    from strategies.score_reversion import ScoreReversion  # imports torch

    values = dict(params)
    bar_days = timeframe_ms / MS_PER_DAY
    if values["train_days"] is None:
        values["train_days"] = DEFAULT_TRAIN_BARS * bar_days
    if values["retrain_days"] is None:
        values["retrain_days"] = DEFAULT_RETRAIN_BARS * bar_days
    return ScoreReversion(build_config(ScoreReversionConfig, values, _params_cached("score")))


def _score_report(strategy: Any, series: Any, config: Any, result: Any, trade_from: int | None) -> dict[str, Any]:
    from reporting.score_report import build_score_report

    return build_score_report(strategy, series, config, result, trade_from)


def _score_preload(strategy: Any, stored: list[tuple[bytes, Any, Any]]) -> int:
    return strategy.preload_folds(stored)


def _score_watch(strategy: Any, callback: Callable[..., None]) -> None:
    strategy.on_fold = callback


def _score_model_count(strategy: Any, series: Any) -> int:
    wf = strategy.config.walk_forward
    anchor = int(series.ts_ms[0]) + wf.train_ms
    return max(1, (int(series.ts_ms[-1]) - anchor) // wf.retrain_ms + 1)


SPECS: dict[str, StrategySpec] = {
    "score": StrategySpec(
        "score", "score-matching model, retrained walk-forward (needs torch)", _score_params, _score,
        aliases={"train_steps": "max_steps", "warm_steps": "warm_start_steps"}, report=_score_report,
        model_versions=lambda s: s.model_versions, preload_models=_score_preload, watch_models=_score_watch,
        model_count=_score_model_count),
    "zscore": StrategySpec("zscore", "return z-score reversion baseline", _zscore_params, _zscore),
    "buyhold": StrategySpec("buyhold", "buy at the first open, hold", lambda: (), _buyhold),
}


def get_spec(name: str) -> StrategySpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ParamError(f"unknown strategy {name!r}; choose one of {', '.join(sorted(SPECS))}") from None


def make_strategy(name: str, params: Mapping[str, Any] | None = None, timeframe_ms: int = 3_600_000) -> "Strategy":
    """Resolve ``params`` (names as ``--param``) and build the strategy: the one entry point for all runners."""
    spec = get_spec(name)
    return spec.build(spec.resolve(params), timeframe_ms)
