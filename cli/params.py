"""Strategy parameters on the command line: ``--param NAME=VALUE`` and the score strategy's older flags.

``--param`` works for every parameter of every strategy (the names come from the
strategy's config, see ``app.registry``). The score strategy's dedicated flags
(``--train-days`` …) stay as spellings of the same parameters. Parsing here only
splits text; types are checked against the strategy's parameter specs, so a bad
name or value is one line and exit status 2.
"""
from __future__ import annotations

import argparse
from typing import Any, Callable

from cli.args import number
from models.config import FORECAST_METHODS, MODEL_TARGETS, OBJECTIVE_NAMES
from strategies.score_config import ENTRY_ORDERS

CHOICES = {"objective": OBJECTIVE_NAMES, "model_target": MODEL_TARGETS, "forecast_method": FORECAST_METHODS,
           "entry_order": ENTRY_ORDERS}  # from the settings modules, which import no torch

# flag dest → parameter name, with the flag's type and help (static: building the parser imports no torch)
SCORE_FLAGS: tuple[tuple[str, str, Callable[[str], Any], str], ...] = (
    ("train_days", "train_days", number(float, lo=0, hi=36_500, lo_open=True),
     "rolling training window in days (default: 8,760 bars = 365 days of 1h bars)"),
    ("retrain_days", "retrain_days", number(float, lo=0, hi=36_500, lo_open=True),
     "days traded per frozen model (default: 720 bars = 30 days of 1h bars)"),
    ("objective", "objective", str, "score-matching objective (default dsm)"),
    ("seed", "seed", number(int, lo=0, hi=2**32 - 1), "seed of model init, batches and noise (default 0)"),
    ("threshold_quantile", "threshold_quantile", number(float, lo=0, hi=1, lo_open=True),
     "entry threshold: this quantile of |signal| on the training window (default 0.99)"),
    ("signal_sigma", "signal_sigma", number(float, lo=0, hi=1_000, lo_open=True),
     "noise level of the signal's score (default 0.6)"),
    ("max_hold_bars", "max_hold_bars", number(int, lo=1, hi=10**7), "exit after this many bars (default 48)"),
    ("stop_loss_pct", "stop_loss_pct", number(float, lo=0, hi=100, hi_open=True),
     "protective stop distance in %% (0 = none; default 5)"),
    ("unusual_gate", "unusual_gate", number(float, lo=0, hi=1, lo_open=True),
     "skip entries when the state's unusualness quantile exceeds this (e.g. 0.999)"),
    ("train_steps", "max_steps", number(int, lo=1, hi=10**7), "Adam steps of the first fit (default 600)"),
    ("warm_steps", "warm_start_steps", number(int, lo=0, hi=10**7),
     "Adam steps of each warm-started refit (default 60)"),
    ("hidden", "hidden", number(int, lo=1, hi=8192), "width of the score network's hidden layers (default 128)"),
    ("batch_size", "batch_size", number(int, lo=1, hi=10**7), "Adam minibatch size (default 512)"),
    ("ensemble", "ensemble", number(int, lo=1, hi=64),
     "seeds trained per fold (seed, seed+1, ...); signals/forecasts are averaged (default 1)"),
    ("sample_check_every", "sample_check_every", number(int, lo=1, hi=10**6),
     "run the per-fold Langevin sample check on every k-th fold (default 4)"),
    ("model_target", "model_target", str,
     "forecast: score of (features, future return) -> p(r | features), cost-aware entries (default, chosen on "
     "2018-08 -> 2021-12); state: the score of today's features as a signal"),
    ("horizon_bars", "horizon_bars", number(int, lo=1, hi=10**5), "forecast horizon h in bars (default 24)"),
    ("forecast_method", "forecast_method", str,
     "tweedie fixed point (fast) or annealed-Langevin inpainting (slow) (default tweedie)"),
    ("forecast_sigma", "forecast_sigma", number(float, lo=0, hi=1_000, lo_open=True),
     "noise level of the Tweedie forecast (default 0.3)"),
    ("forecast_iterations", "forecast_iterations", number(int, lo=1, hi=1_000),
     "Tweedie fixed-point iterations (default 5)"),
    ("interval", "interval", number(float, lo=0, hi=1, lo_open=True, hi_open=True),
     "central probability of the forecast interval (default 0.8)"),
    ("inpaint_samples", "inpaint_samples", number(int, lo=2, hi=100_000), "Langevin samples per bar (inpaint; default 64)"),
    ("cost_margin_pct", "cost_margin_pct", number(float, lo=0, hi=100),
     "enter only when the expected move beats the round-trip fee+slippage by this %% (default 0.5)"),
    ("entry_order", "entry_order", str,
     "market: enter at the next open (taker fee); passive: rest a limit at the signal bar's close shifted "
     "--passive-offset-bps in the trade's favour, maker fee when it rests (default passive, chosen on "
     "2018-08 -> 2021-12 at 10 bps)"),
    ("passive_offset_bps", "passive_offset_bps", number(float, lo=0, hi=10_000, hi_open=True),
     "passive entry: limit price this many bps below (long) / above (short) the close (default 0)"),
    ("passive_expiry_bars", "passive_expiry_bars", number(int, lo=1, hi=10**6),
     "passive entry: cancel it when unfilled after this many bars (default 2)"),
)
# Switches: flag → (parameter, the value the flag sets).
SCORE_SWITCHES: tuple[tuple[str, str, bool, str], ...] = (
    ("size_by_confidence", "size_by_confidence", True,
     "size = min(1, |forecast mean| / interval half-width) of equity instead of all-in"),
    ("no_exit_on_reversal", "exit_on_reversal", False,
     "hold to the horizon (or stop) even when the forecast turns the other way"),
)


def add_param_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="set any strategy parameter (repeatable), e.g. --param window=20 --param entry_z=1.5; "
                        "'none' clears an optional one. List them with --list-params")
    p.add_argument("--list-params", action="store_true",
                   help="print the chosen --strategy's parameters (name, type, default, meaning) and exit")


def add_score_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("score strategy (shortcuts for --param NAME=VALUE; other strategies ignore them)")
    for dest, _, kind, text in SCORE_FLAGS:
        extra = {"choices": CHOICES[dest]} if dest in CHOICES else {}
        g.add_argument("--" + dest.replace("_", "-"), dest=dest, type=kind, default=None, help=text, **extra)
    for dest, _, value, text in SCORE_SWITCHES:
        g.add_argument("--" + dest.replace("_", "-"), dest=dest, action="store_const", const=value, default=None,
                       help=text)


def split_assignments(items: list[str], option: str = "--param") -> dict[str, str]:
    """['a=1', 'b=x'] → {'a': '1', 'b': 'x'}; a malformed or repeated item raises ValueError."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"{option} {item!r}: expected NAME=VALUE")
        if name in out:
            raise ValueError(f"{option} {name} given twice")
        out[name] = value
    return out


def given_params(args: argparse.Namespace, strategy: str) -> dict[str, Any]:
    """The parameters a user set: score flags (score strategy only; other strategies ignore them, as they
    always have) and then ``--param`` (which wins)."""
    out: dict[str, Any] = {}
    if strategy == "score":
        for dest, name, *_ in SCORE_FLAGS + SCORE_SWITCHES:
            value = getattr(args, dest, None)
            if value is not None:
                out[name] = value
    out.update(split_assignments(list(getattr(args, "param", None) or [])))
    return out


def describe_params(specs: Any) -> str:
    """A plain table of parameters for --list-params."""
    lines = [f"{'name':<26} {'type':<22} {'default':<14} meaning"]
    for p in specs:
        default = "none" if p.default is None else (",".join(map(str, p.default)) if isinstance(p.default, tuple)
                                                     else str(p.default))
        lines.append(f"{p.name:<26} {p.describe_type():<22} {default:<14} {p.doc}")
    return "\n".join(lines)
