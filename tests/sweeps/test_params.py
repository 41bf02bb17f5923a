"""Strategy parameters: derived from config dataclasses, settable by --param, checked before anything runs."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable

import pytest

import run_backtest
from app.registry import SPECS, get_spec, make_strategy
from app.sweep.plan import all_params, parse_grid
from engine.backtest import run_backtest as engine_backtest
from engine.broker import BrokerConfig
from feeds.files import load_bars
from strategies.params import ParamError, build_config, config_params
from strategies.zscore import ZScoreConfig, ZScoreReversion
from tests.sweeps.conftest import REPO, child_env, rows


@dataclass(frozen=True)
class _Inner:
    lr: float = 1e-3  # learning rate
    steps: int = 100  # Adam steps
    seed: int = field(default=0, metadata={"doc": "seed of everything"})


@dataclass(frozen=True)
class _Outer:
    window: int = 20  # bars in the window
    gate: float | None = None  # optional gate
    inner: _Inner = field(default_factory=lambda: _Inner(steps=7))
    weights: tuple[float, ...] = (0.5, 0.5)  # per-feature weights
    hook: Callable[[int], int] | None = None  # not settable from text: keeps its default


def test_parameters_come_from_the_config_dataclass() -> None:
    specs = {p.name: p for p in config_params(_Outer)}
    assert list(specs) == ["window", "gate", "lr", "steps", "seed", "weights"]  # nested flattened, hook skipped
    assert specs["weights"].parse("1,2.5") == (1.0, 2.5)
    assert specs["steps"].default == 7  # the parent's default instance wins over the class default
    assert (specs["window"].kind, specs["window"].doc) == ("int", "bars in the window")
    assert specs["gate"].optional and specs["gate"].parse("none") is None
    assert specs["seed"].doc == "seed of everything"
    cfg = build_config(_Outer, {**{n: p.default for n, p in specs.items()}, "lr": 0.01, "gate": 0.5}, specs.values())
    assert cfg == _Outer(gate=0.5, inner=_Inner(lr=0.01, steps=7))
    with pytest.raises(ParamError, match="expected int"):
        specs["window"].parse("2.5")


def test_every_registered_strategy_exposes_its_config() -> None:
    assert set(SPECS) == {"score", "zscore", "buyhold"}
    assert get_spec("zscore").param_names() == ["window", "entry_z", "exit_z", "long_only"]
    score = get_spec("score").param_names()
    assert {"train_days", "threshold_quantile", "max_steps", "seed", "hidden", "max_hold_bars"} <= set(score)
    with pytest.raises(ParamError, match="valid: entry_z, exit_z, long_only, window"):
        get_spec("zscore").resolve({"windw": 3})


def test_param_equals_the_strategy_built_by_hand(candles, tmp_path, capsys) -> None:
    db = tmp_path / "p.db"
    rc = run_backtest.main(["--data", str(candles), "--strategy", "zscore", "--param", "window=30",
                            "--param", "entry_z=1.75", "--param", "exit_z=0.25", "--db", str(db), "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert rc == 0 and payload["params"] == {"window": 30, "entry_z": 1.75, "exit_z": 0.25, "long_only": False}
    ref = engine_backtest(load_bars(candles), ZScoreReversion(ZScoreConfig(30, 1.75, 0.25)), BrokerConfig())
    assert payload["metrics"] == ref.metrics.to_dict() and ref.metrics["trades"] > 0
    stored = rows(f"sqlite:///{db}", "select params from runs")[0][0]
    assert json.loads(stored)["config"] == {"window": 30, "entry_z": 1.75, "exit_z": 0.25, "long_only": False}


@pytest.mark.parametrize("args, message", [
    (["--param", "windw=3"], "error: unknown parameter 'windw' for strategy 'zscore'; valid: entry_z, exit_z, "
                             "long_only, window"),
    (["--param", "window=abc"], "error: window='abc': expected int"),
    (["--param", "window"], "error: --param 'window': expected NAME=VALUE"),
])
def test_bad_params_are_one_line_and_write_nothing(candles, tmp_path, capsys, args, message) -> None:
    db = tmp_path / "bad.db"
    rc = run_backtest.main(["--data", str(candles), "--strategy", "zscore", "--db", str(db), *args])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(message) and err.count("\n") == 1, err
    assert not db.exists()


def test_score_flags_are_spellings_of_the_same_parameters() -> None:
    parser = run_backtest.build_parser()
    from cli.params import given_params

    flags = parser.parse_args(["--strategy", "score", "--train-days", "0.5", "--train-steps", "30",
                               "--warm-steps", "5", "--seed", "3"])
    params = parser.parse_args(["--strategy", "score", "--param", "train_days=0.5", "--param", "max_steps=30",
                                "--param", "warm_start_steps=5", "--param", "seed=3"])
    spec = get_spec("score")
    assert spec.resolve(given_params(flags, "score")) == spec.resolve(given_params(params, "score"))
    a = make_strategy("score", given_params(flags, "score"), 3_600_000)
    assert a.config.walk_forward.train.max_steps == 30 and a.config.walk_forward.train_days == 0.5


def test_grid_ranges_include_a_stop_on_the_grid() -> None:
    names = all_params(get_spec("zscore").params())
    grid = parse_grid(["entry_z=1.5:3:0.5", "window=10:40:15", "fee_bps=0,5"], names)
    assert grid == {"entry_z": [1.5, 2.0, 2.5, 3.0], "window": [10, 25, 40], "fee_bps": [0.0, 5.0]}
    assert parse_grid(["entry_z=1:2:0.3"], names)["entry_z"] == [1.0, 1.3, 1.6, 1.9]


def test_a_zscore_run_never_imports_torch(candles, tmp_path) -> None:
    code = ("import sys, run_backtest\n"
            f"rc = run_backtest.main(['--data', {str(candles)!r}, '--strategy', 'zscore', '--json', "
            f"'--db', {str(tmp_path / 't.db')!r}])\n"
            "assert rc == 0\n"
            "print('torch' in sys.modules, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=child_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "False"


def test_objective_choices_match_the_losses() -> None:
    from cli.params import CHOICES
    from models.losses import OBJECTIVES

    assert CHOICES["objective"] == tuple(sorted(OBJECTIVES))


def test_a_score_sweeps_driver_never_imports_torch(candles, tmp_path) -> None:
    """The workers train the models; the driver (parameters, hashes, storage, statistics) needs no torch."""
    tiny = {"train_days": 30, "retrain_days": 60, "max_steps": 20, "warm_start_steps": 5, "hidden": 8,
            "sample_check_samples": 0}
    argv = ["--data", str(candles), "--strategy", "score", "--grid", "threshold_quantile=0.95", "--workers", "1",
            "--db", f"sqlite:///{tmp_path / 's.db'}", "--name", "no-torch", "--json",
            *[a for k, v in tiny.items() for a in ("--param", f"{k}={v}")]]
    script = tmp_path / "sweep_then_check.py"
    script.write_text(  # a file with a main guard: the local workers import the main module again
        "import json, sys\n"
        "from io import StringIO\n"
        "if __name__ == '__main__':\n"
        "    from cli.run_sweep import main\n"
        "    out, sys.stdout = sys.stdout, StringIO()\n"
        f"    rc = main({argv!r})\n"
        "    payload, sys.stdout = json.loads(sys.stdout.getvalue()), out\n"
        "    assert rc == 0 and payload['runs'][0]['metrics']['bars'] > 0, payload\n"
        "    print('torch' in sys.modules, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, env=child_env(), capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "False"
