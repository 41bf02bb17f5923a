"""The score strategy's options (cli/params.py) parse without importing torch, and name the model's objectives."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from models.losses import OBJECTIVES
from models.forecast import FORECAST_METHODS
from models.walk_forward import MODEL_TARGETS
from cli.params import FORECAST_METHOD_NAMES, MODEL_TARGET_NAMES
from cli.params import OBJECTIVE_CHOICES as OBJECTIVE_NAMES

ROOT = Path(__file__).resolve().parents[2]


def test_objective_names_are_the_models_objectives() -> None:
    assert sorted(OBJECTIVE_NAMES) == sorted(OBJECTIVES)
    assert sorted(MODEL_TARGET_NAMES) == sorted(MODEL_TARGETS)
    assert sorted(FORECAST_METHOD_NAMES) == sorted(FORECAST_METHODS)


def test_parsing_backtest_options_does_not_import_torch() -> None:
    code = ("import sys, run_backtest; run_backtest.build_parser().parse_args(['--strategy', 'zscore']); "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr
