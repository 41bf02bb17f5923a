"""Command-line options of the score strategy, shared by run_backtest.py and run_paper.py.

Adding the options imports nothing heavy: torch (~1 s, ~180 MB) is imported only when a
score strategy is actually built, so the other strategies' runs never pay for it.
"""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from cli.args import number

if TYPE_CHECKING:
    from strategies.score_reversion import ScoreReversion, ScoreReversionConfig

# models.losses.OBJECTIVES' names, spelled out to keep torch out of argument parsing
# (tests/strategies/test_score_cli.py checks they agree).
OBJECTIVE_NAMES = ("dsm", "ssm", "ssm-vr")
# models.walk_forward.MODEL_TARGETS and models.forecast.FORECAST_METHODS, spelled out for the same reason.
MODEL_TARGET_NAMES = ("state", "forecast")
FORECAST_METHOD_NAMES = ("tweedie", "inpaint")


# DESIGN.md's defaults are for 1h bars (365 and 30 days); on other timeframes the
# same number of bars is used, like the feature windows, so a 1m paper run warms
# up on ~6 days of candles instead of a year.
DEFAULT_TRAIN_BARS = 8760
DEFAULT_RETRAIN_BARS = 720


def add_score_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("score strategy (walk-forward score model)")
    g.add_argument("--train-days", type=number(float, lo=0, hi=36_500, lo_open=True), default=None,
                   help="rolling training window in days (default: 8,760 bars = 365 days of 1h bars)")
    g.add_argument("--retrain-days", type=number(float, lo=0, hi=36_500, lo_open=True), default=None,
                   help="days traded per frozen model (default: 720 bars = 30 days of 1h bars)")
    g.add_argument("--objective", default="dsm", choices=OBJECTIVE_NAMES, help="score-matching objective")
    g.add_argument("--seed", type=number(int, lo=0, hi=2**32 - 1),
                   default=0, help="seed of model init, batches and noise (default 0)")
    g.add_argument("--threshold-quantile", type=number(float, lo=0, hi=1, lo_open=True), default=0.99,
                   help="entry threshold: this quantile of |signal| on the training window (default 0.99)")
    g.add_argument("--signal-sigma", type=number(float, lo=0, hi=1_000, lo_open=True),
                   default=0.6, help="noise level of the signal's score (default 0.6)")
    g.add_argument("--max-hold-bars", type=number(int, lo=1, hi=10**7),
                   default=48, help="exit after this many bars (default 48)")
    g.add_argument("--stop-loss-pct", type=number(float, lo=0, hi=100, hi_open=True),
                   default=5.0, help="protective stop distance in %% (0 = none)")
    g.add_argument("--unusual-gate", type=number(float, lo=0, hi=1, lo_open=True), default=None,
                   help="skip entries when the state's unusualness quantile exceeds this (e.g. 0.999)")
    g.add_argument("--train-steps", type=number(int, lo=1, hi=10**7),
                   default=600, help="Adam steps of the first fit (default 600)")
    g.add_argument("--warm-steps", type=number(int, lo=0, hi=10**7),
                   default=60, help="Adam steps of each warm-started refit (default 60)")
    g.add_argument("--hidden", type=number(int, lo=1, hi=8192),
                   default=128, help="width of the score network's hidden layers")
    g.add_argument("--batch-size", type=number(int, lo=1, hi=10**7), default=512,
                   help="Adam minibatch size (default 512)")
    g.add_argument("--ensemble", type=number(int, lo=1, hi=64), default=1,
                   help="seeds trained per fold (seed, seed+1, ...); signals/forecasts are averaged (default 1)")
    g.add_argument("--sample-check-every", type=number(int, lo=1, hi=10**6), default=4,
                   help="run the per-fold Langevin sample check on every k-th fold (default 4)")
    f = p.add_argument_group("score strategy: forecast target (cost-aware entries)")
    f.add_argument("--model-target", default="forecast", choices=MODEL_TARGET_NAMES,
                   help="forecast: score of (features, future return) → p(r | features), cost-aware entries "
                        "(default, chosen on 2018-08 → 2021-12); state: the score of today's features as a signal")
    f.add_argument("--horizon-bars", type=number(int, lo=1, hi=10**5), default=24,
                   help="forecast horizon h in bars (default 24)")
    f.add_argument("--forecast-method", default="tweedie", choices=FORECAST_METHOD_NAMES,
                   help="tweedie fixed point (fast) or annealed-Langevin inpainting (slow) (default tweedie)")
    f.add_argument("--forecast-sigma", type=number(float, lo=0, hi=1_000, lo_open=True), default=0.3,
                   help="noise level of the Tweedie forecast (default 0.3)")
    f.add_argument("--forecast-iterations", type=number(int, lo=1, hi=1_000), default=5,
                   help="Tweedie fixed-point iterations (default 5)")
    f.add_argument("--interval", type=number(float, lo=0, hi=1, lo_open=True, hi_open=True), default=0.8,
                   help="central probability of the forecast interval (default 0.8)")
    f.add_argument("--inpaint-samples", type=number(int, lo=2, hi=100_000), default=64,
                   help="Langevin samples per bar (inpaint; default 64)")
    f.add_argument("--cost-margin-pct", type=number(float, lo=0, hi=100), default=0.5,
                   help="enter only when the expected move beats the round-trip fee+slippage by this %% (default 0.5)")
    f.add_argument("--size-by-confidence", action="store_true",
                   help="size = min(1, |forecast mean| / interval half-width) of equity instead of all-in")
    f.add_argument("--no-exit-on-reversal", dest="exit_on_reversal", action="store_false",
                   help="hold to the horizon (or stop) even when the forecast turns the other way")


def score_config(options: dict[str, Any]) -> "ScoreReversionConfig":
    """Build the frozen config from parsed options (missing keys take the defaults)."""
    from models.training import TrainConfig
    from models.walk_forward import MS_PER_DAY, WalkForwardConfig
    from strategies.score_reversion import ScoreReversionConfig

    o = {**_defaults(), **{k: v for k, v in options.items() if v is not None or k == "unusual_gate"}}
    bar_days = o.get("timeframe_ms", 3_600_000) / MS_PER_DAY
    o["train_days"] = o["train_days"] if o["train_days"] is not None else DEFAULT_TRAIN_BARS * bar_days
    o["retrain_days"] = o["retrain_days"] if o["retrain_days"] is not None else DEFAULT_RETRAIN_BARS * bar_days
    train = TrainConfig(objective=o["objective"], seed=o["seed"], max_steps=o["train_steps"],
                        warm_start_steps=o["warm_steps"], hidden=o["hidden"], batch_size=o["batch_size"])
    wf = WalkForwardConfig(train_days=o["train_days"], retrain_days=o["retrain_days"],
                           signal_sigma=o["signal_sigma"], threshold_quantile=o["threshold_quantile"],
                           model_target=o["model_target"], horizon_bars=o["horizon_bars"],
                           forecast_method=o["forecast_method"], forecast_sigma=o["forecast_sigma"],
                           forecast_iterations=o["forecast_iterations"], interval=o["interval"],
                           inpaint_samples=o["inpaint_samples"], ensemble=o["ensemble"],
                           sample_check_every=o["sample_check_every"], train=train)
    if o["max_hold_bars"] < 1:
        raise ValueError("--max-hold-bars must be >= 1")
    if o["stop_loss_pct"] < 0 or o["stop_loss_pct"] >= 100:
        raise ValueError("--stop-loss-pct must be in [0, 100)")
    if o["unusual_gate"] is not None and not 0 < o["unusual_gate"] <= 1:
        raise ValueError("--unusual-gate must be in (0, 1]")
    if o["cost_margin_pct"] < 0:
        raise ValueError("--cost-margin-pct must be >= 0")
    return ScoreReversionConfig(walk_forward=wf, max_hold_bars=o["max_hold_bars"], stop_loss_pct=o["stop_loss_pct"],
                                unusual_gate=o["unusual_gate"], long_only=bool(o.get("long_only", False)),
                                cost_margin_pct=o["cost_margin_pct"], fee_bps=float(o.get("fee_bps", 10.0)),
                                slippage_bps=float(o.get("slippage_bps", 0.0)),
                                size_by_confidence=bool(o["size_by_confidence"]),
                                exit_on_reversal=bool(o["exit_on_reversal"]))


def make_score_strategy(options: dict[str, Any]) -> "ScoreReversion":
    from strategies.score_reversion import ScoreReversion

    return ScoreReversion(score_config(options))


def _defaults() -> dict[str, Any]:
    parser = argparse.ArgumentParser(add_help=False)
    add_score_options(parser)
    return vars(parser.parse_args([]))
