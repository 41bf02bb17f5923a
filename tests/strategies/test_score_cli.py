"""The score strategy's options (cli/params.py) parse without importing torch, and name the model's objectives."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cli.params import CHOICES, given_params
from models.config import FORECAST_METHODS, MODEL_TARGETS, OBJECTIVE_NAMES, TrainConfig, WalkForwardConfig
from models.losses import OBJECTIVES
from strategies.score_config import ENTRY_ORDERS, ScoreReversionConfig

ROOT = Path(__file__).resolve().parents[2]


def test_the_settings_name_what_the_models_implement_and_the_options_offer_them() -> None:
    assert sorted(OBJECTIVE_NAMES) == sorted(OBJECTIVES)  # the losses module implements each name, no other
    assert CHOICES == {"objective": OBJECTIVE_NAMES, "model_target": MODEL_TARGETS,
                       "forecast_method": FORECAST_METHODS, "entry_order": ENTRY_ORDERS}
    for name in OBJECTIVE_NAMES:
        assert TrainConfig(objective=name).objective == name
    for target in MODEL_TARGETS:
        assert WalkForwardConfig(model_target=target).model_target == target
    for method in FORECAST_METHODS:
        assert WalkForwardConfig(forecast_method=method).forecast_method == method
    with pytest.raises(ValueError, match="unknown objective 'nce'; choose one of"):
        TrainConfig(objective="nce")
    with pytest.raises(ValueError, match="model_target must be one of"):
        WalkForwardConfig(model_target="price")


def test_reading_and_checking_score_settings_does_not_import_torch() -> None:
    """A sweep's driver plans score runs (parameter names, defaults, checks) without torch: only
    the workers that train models load it (~1.2 s and ~180 MB each)."""
    code = ("import sys\n"
            "from app.registry import get_spec\n"
            "from app.sweep.plan import all_params, parse_grid\n"
            "spec = get_spec('score')\n"
            "values = spec.resolve({'train_days': '30', 'max_steps': '40', 'objective': 'ssm'})\n"
            "assert values['train_days'] == 30.0 and values['objective'] == 'ssm'\n"
            "parse_grid(['threshold_quantile=0.95,0.99'], all_params(spec.params()))\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr


def test_entry_flags_and_the_broker_fee_schedule_reach_the_strategy_config() -> None:
    import run_backtest
    from app.registry import get_spec, make_strategy

    plain = ScoreReversionConfig()
    assert make_strategy("score", {}).config.entry_order == plain.entry_order == "passive"
    args = run_backtest.build_parser().parse_args(
        ["--strategy", "score", "--entry-order", "market", "--passive-offset-bps", "7.5", "--passive-expiry-bars",
         "9", "--taker-fee-bps", "5", "--maker-fee-bps", "2", "--slippage-bps", "0.5"])
    given = get_spec("score").with_broker(given_params(args, "score"), long_only=False, fee_bps=args.fee_bps,
                                          slippage_bps=args.slippage_bps, maker_fee_bps=args.maker_fee_bps)
    run = make_strategy("score", given).config
    assert (run.entry_order, run.fee_bps, run.maker_fee_bps, run.passive_offset_bps, run.passive_expiry_bars) == \
        ("market", 5.0, 2.0, 7.5, 9)
    assert run.round_trip_cost == 2 * (5.0 + 0.5) / 1e4
    passive = make_strategy("score", {**given, "entry_order": "passive"}).config
    assert passive.round_trip_cost == (2.0 + 5.0 + 0.5) / 1e4  # maker entry, taker + slippage exit


def test_parsing_backtest_options_does_not_import_torch() -> None:
    code = ("import sys, run_backtest; run_backtest.build_parser().parse_args(['--strategy', 'zscore']); "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr
