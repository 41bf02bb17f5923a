"""The score strategy's options (cli/params.py) parse without importing torch, and name the model's objectives."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from models.losses import OBJECTIVES
from models.forecast import FORECAST_METHODS
from models.walk_forward import MODEL_TARGETS
from cli.params import ENTRY_ORDER_NAMES, FORECAST_METHOD_NAMES, MODEL_TARGET_NAMES, given_params
from cli.params import OBJECTIVE_CHOICES as OBJECTIVE_NAMES
from strategies.score_reversion import ENTRY_ORDERS, ScoreReversionConfig

ROOT = Path(__file__).resolve().parents[2]


def test_objective_names_are_the_models_objectives() -> None:
    assert sorted(OBJECTIVE_NAMES) == sorted(OBJECTIVES)
    assert sorted(MODEL_TARGET_NAMES) == sorted(MODEL_TARGETS)
    assert sorted(FORECAST_METHOD_NAMES) == sorted(FORECAST_METHODS)
    assert sorted(ENTRY_ORDER_NAMES) == sorted(ENTRY_ORDERS)


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
