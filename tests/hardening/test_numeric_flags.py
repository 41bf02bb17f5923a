"""Issue 8: every numeric flag of every command, fed nan, inf, -inf, -1, 0, 1e309 and "".

Each value is refused with exit status 2, exactly one line on stderr naming the flag, nothing on
stdout and no run row (for run_backtest.py and run_paper.py: not even a database file, since
flags are checked before anything is opened). Where 0 or -1 is a legitimate value, the table
says so and why, and the test asserts it is ACCEPTED instead.

The flags are discovered from the parsers themselves, so a numeric flag added later without a
row in this table makes the test fail.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

import download_data
import run_backtest
import run_paper
from cli import run_sweep
from feeds.synthetic import synthetic_bars
from cli import inspect_trades as inspect_cli

ROOT = Path(__file__).resolve().parents[2]
VALUES = ("nan", "inf", "-inf", "-1", "0", "1e309", "")

# (command, flag) -> {value it must ACCEPT: why}. Every other value of VALUES must be refused.
ACCEPTED: dict[tuple[str, str], dict[str, str]] = {
    ("run_backtest", "--cash"): {},
    ("run_backtest", "--fee-bps"): {"0": "a zero-fee venue or a no-cost study is legitimate"},
    ("run_backtest", "--taker-fee-bps"): {"0": "another name for --fee-bps"},
    ("run_backtest", "--maker-fee-bps"): {"0": "many venues charge resting orders nothing"},
    ("run_backtest", "--slippage-bps"): {"0": "the default: market orders fill at the next open"},
    ("run_backtest", "--start"): {"0": "epoch ms 0 (1970-01-01): load from the first bar"},
    ("run_backtest", "--end"): {},  # 0 parses (1970) but leaves no bars: refused as bad data, exit 2
    ("run_backtest", "--trade-from"): {"0": "epoch ms 0: trade from the first bar"},
    ("run_backtest", "--train-days"): {},
    ("run_backtest", "--retrain-days"): {},
    ("run_backtest", "--seed"): {"0": "the default seed"},
    ("run_backtest", "--threshold-quantile"): {},
    ("run_backtest", "--signal-sigma"): {},
    ("run_backtest", "--max-hold-bars"): {},
    ("run_backtest", "--stop-loss-pct"): {"0": "0 means no protective stop"},
    ("run_backtest", "--unusual-gate"): {},
    ("run_backtest", "--train-steps"): {},
    ("run_backtest", "--warm-steps"): {"0": "refits may reuse the previous fold's weights unchanged"},
    ("run_backtest", "--hidden"): {},
    ("run_backtest", "--batch-size"): {},
    ("run_backtest", "--ensemble"): {},
    ("run_backtest", "--sample-check-every"): {},
    ("run_backtest", "--horizon-bars"): {},
    ("run_backtest", "--forecast-sigma"): {},
    ("run_backtest", "--forecast-iterations"): {},
    ("run_backtest", "--interval"): {},
    ("run_backtest", "--inpaint-samples"): {},
    ("run_backtest", "--cost-margin-pct"): {"0": "no margin: enter once the expected move beats the round-trip cost"},
    ("run_backtest", "--passive-offset-bps"): {"0": "a limit at the signal bar's close (the default)"},
    ("run_backtest", "--passive-expiry-bars"): {},
    ("run_paper", "--ws-stale-s"): {},
    ("run_paper", "--max-bars"): {},
    ("run_paper", "--cash"): {},
    ("run_paper", "--fee-bps"): {"0": "a zero-fee venue is legitimate"},
    ("run_paper", "--taker-fee-bps"): {"0": "another name for --fee-bps"},
    ("run_paper", "--maker-fee-bps"): {"0": "many venues charge resting orders nothing"},
    ("run_paper", "--slippage-bps"): {"0": "the default"},
    ("run_paper", "--warmup-bars"): {"0": "a strategy that needs no history (buy-and-hold)"},
    ("run_paper", "--poll-interval"): {},
    ("run_paper", "--timeout-ms"): {},
    ("run_paper", "--lease-stale-s"): {},
    ("run_paper", "--train-days"): {},
    ("run_paper", "--retrain-days"): {},
    ("run_paper", "--seed"): {"0": "the default seed"},
    ("run_paper", "--threshold-quantile"): {},
    ("run_paper", "--signal-sigma"): {},
    ("run_paper", "--max-hold-bars"): {},
    ("run_paper", "--stop-loss-pct"): {"0": "0 means no protective stop"},
    ("run_paper", "--unusual-gate"): {},
    ("run_paper", "--train-steps"): {},
    ("run_paper", "--warm-steps"): {"0": "refits may reuse the previous fold's weights unchanged"},
    ("run_paper", "--hidden"): {},
    ("run_paper", "--batch-size"): {},
    ("run_paper", "--ensemble"): {},
    ("run_paper", "--sample-check-every"): {},
    ("run_paper", "--horizon-bars"): {},
    ("run_paper", "--forecast-sigma"): {},
    ("run_paper", "--forecast-iterations"): {},
    ("run_paper", "--interval"): {},
    ("run_paper", "--inpaint-samples"): {},
    ("run_paper", "--cost-margin-pct"): {"0": "no margin: enter once the expected move beats the round-trip cost"},
    ("run_paper", "--passive-offset-bps"): {"0": "a limit at the signal bar's close (the default)"},
    ("run_paper", "--passive-expiry-bars"): {},
    ("inspect_trades runs", "--limit"): {"0": "0 means all rows"},
    ("inspect_trades show", "--limit"): {"0": "0 means all folds"},
    ("inspect_trades trades", "--from"): {"0": "epoch ms 0 is a valid lower bound"},
    ("inspect_trades trades", "--to"): {"0": "epoch ms 0 is a valid (empty) upper bound"},
    ("inspect_trades trades", "--min-pnl"): {"-1": "P&L filters are signed", "0": "only winners"},
    ("inspect_trades trades", "--max-pnl"): {"-1": "P&L filters are signed", "0": "only losers"},
    ("inspect_trades trades", "--limit"): {"0": "0 means all rows"},
    ("inspect_trades equity", "--from"): {"0": "epoch ms 0 is a valid lower bound"},
    ("inspect_trades equity", "--to"): {"0": "epoch ms 0 is a valid (empty) upper bound"},
    ("inspect_trades equity", "--limit"): {"0": "0 means all rows"},
    ("inspect_trades orders", "--from"): {"0": "epoch ms 0 is a valid lower bound"},
    ("inspect_trades orders", "--to"): {"0": "epoch ms 0 is a valid (empty) upper bound"},
    ("inspect_trades orders", "--limit"): {"0": "0 means all rows"},
    ("inspect_trades sweeps", "--limit"): {"0": "0 means all rows"},
    ("inspect_trades sweep", "--limit"): {"0": "0 means all rows"},
    ("inspect_trades report", "--png-size"): {},
    ("inspect_trades report", "--max-points"): {"0": "0 means every point"},
    ("run_sweep", "--trials"): {},
    ("run_sweep", "--search-seed"): {"0": "the default sampler seed"},
    ("run_sweep", "--seeds"): {"0": "seed 0 is a model seed like any other"},
    ("run_sweep", "--workers"): {},
    ("run_sweep", "--threads"): {},
    ("run_sweep", "--retries"): {"0": "never resubmit a dead worker's task"},
    ("run_sweep", "--select-until"): {"0": "epoch ms 0 parses; that no bar precedes it is a data error later"},
    ("run_sweep", "--cash"): {},
    ("run_sweep", "--fee-bps"): {"0": "a zero-fee venue or a no-cost study is legitimate"},
    ("run_sweep", "--taker-fee-bps"): {"0": "a zero-fee venue or a no-cost study is legitimate"},
    ("run_sweep", "--maker-fee-bps"): {"0": "maker rebates aside, a zero maker fee is common"},
    ("run_sweep", "--slippage-bps"): {"0": "the default"},
    ("download_data", "--timeout-ms"): {},
    ("download_data", "--since"): {"0": "epoch 0 (1970): from the exchange's first candle"},
    ("download_data", "--until"): {"0": "a valid time; nothing closed before it is an empty download"},
}


def _numeric_flags(parser: argparse.ArgumentParser, command: str) -> set[tuple[str, str]]:
    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= _numeric_flags(sub, f"{command} {name}")
        elif action.option_strings and (action.type in (int, float) or getattr(action.type, "numeric", False)):
            found.add((command, max(action.option_strings, key=len)))
    return found


def test_the_table_covers_every_numeric_flag_of_every_command() -> None:
    found = (_numeric_flags(run_backtest.build_parser(), "run_backtest")
             | _numeric_flags(run_paper.build_parser(), "run_paper")
             | _numeric_flags(inspect_cli.build_parser(), "inspect_trades")
             | _numeric_flags(run_sweep.build_parser(), "run_sweep")
             | _numeric_flags(download_data.build_parser(), "download_data"))
    assert found == set(ACCEPTED), {"missing from the table": found - set(ACCEPTED),
                                    "not a numeric flag": set(ACCEPTED) - found}


CASES = [(cmd, flag, value) for (cmd, flag) in ACCEPTED for value in VALUES]


def _ids(case: tuple[str, str, str]) -> str:
    cmd, flag, value = case
    return f"{cmd.replace(' ', ':')}{flag}={value or 'EMPTY'}"


@pytest.fixture(scope="module")
def candles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("flags") / "bars.csv"
    synthetic_bars(400, seed=3).to_frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def inspect_db(tmp_path_factory: pytest.TempPathFactory, candles: Path) -> Path:
    db = tmp_path_factory.mktemp("flags") / "runs.db"
    assert run_backtest.main(["--data", str(candles), "--strategy", "zscore", "--db", str(db), "--name", "r",
                              "--json"]) == 0
    assert run_sweep.main(["--data", str(candles), "--strategy", "zscore", "--grid", "window=20", "--workers", "1",
                           "--db", str(db), "--name", "r", "--json"]) == 0
    assert not db.with_name(db.name + "-wal").exists()  # no connection left open: the file will not change
    return db


def _backtest_argv(flag: str, value: str, candles: Path, db: Path) -> list[str]:
    return ["--data", str(candles), "--strategy", "zscore", "--db", str(db), "--json", flag, value]


def _paper_argv(flag: str, value: str, db: Path) -> list[str]:
    # The exchange URL points at a closed port: a refused flag must stop the run before any request.
    return ["--exchange-url", "http://127.0.0.1:9", "--strategy", "zscore", "--timeframe", "1m", "--db", str(db),
            "--run-name", "flags", flag, value]


def _assert_one_line_refusal(rc: int, out: str, err: str, flag: str, prefix: str = "error: ") -> None:
    lines = err.splitlines()
    assert rc == 2, (rc, err)
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    assert flag in lines[0], err
    assert "Traceback" not in err and out == ""


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_every_numeric_flag(case: tuple[str, str, str], candles: Path, inspect_db: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    command, flag, value = case
    accepted = value in ACCEPTED[(command, flag)]
    db = tmp_path / "runs.db"
    if command == "run_backtest":
        argv = _backtest_argv(flag, value, candles, db)
        rc = run_backtest.main(argv)
        out, err = capsys.readouterr()
        if accepted:
            assert rc == 0, err
            assert '"run_id"' in out
        elif flag == "--end" and value == "0":  # a valid time with no bars before it: bad data, exit 2
            assert rc == 2 and len(err.splitlines()) == 1 and "fewer than 2 bars" in err, err
            assert not db.exists() or _runs(db) == 0
        else:
            _assert_one_line_refusal(rc, out, err, flag)
            assert not db.exists()  # checked before the database was even opened
    elif command == "run_paper":
        argv = _paper_argv(flag, value, db)
        if accepted:
            parser = run_paper.build_parser()
            args = parser.parse_args(argv)
            run_paper.validate(args)
            dest = next(a.dest for a in parser._actions if flag in a.option_strings)  # --taker-fee-bps → fee_bps
            assert getattr(args, dest) == float(value)
        else:
            rc = run_paper.main(argv)
            out, err = capsys.readouterr()
            _assert_one_line_refusal(rc, out, err, flag)
            assert not db.exists() and not (tmp_path / "x.csv").exists()
    elif command == "run_sweep":
        argv = ["--data", str(candles), "--strategy", "zscore", "--grid", "window=20,30", "--db", str(db),
                "--name", "flags", "--json", flag, value]
        if accepted:
            run_sweep.make_request(run_sweep.build_parser().parse_args(argv))
        else:
            rc = run_sweep.main(argv)
            out, err = capsys.readouterr()
            _assert_one_line_refusal(rc, out, err, flag)
        assert not db.exists()  # checked before the database was even opened
    elif command == "download_data":
        out_file = tmp_path / "bars.csv.gz"
        argv = ["--exchange-url", "http://127.0.0.1:9", "--out", str(out_file), flag, value]
        if accepted:
            args = download_data.build_parser().parse_args(argv)
            assert download_data._validated(args)["out"] == out_file
        else:
            rc = download_data.main(argv)
            out, err = capsys.readouterr()
            _assert_one_line_refusal(rc, out, err, flag)
        assert not out_file.exists()
    else:
        sub = command.split()[1]
        before = inspect_db.read_bytes()
        argv = ["--db", str(inspect_db), sub] + ([] if sub in ("runs", "sweeps") else ["r"]) + [flag, value]
        if sub == "report":
            argv += ["-o", str(tmp_path / "r.html")]
        rc = inspect_cli.main(argv)
        out, err = capsys.readouterr()
        if accepted:
            assert rc == 0, err
        else:
            _assert_one_line_refusal(rc, out, err, flag, prefix="inspect_trades.py: error: ")
            assert not (tmp_path / "r.html").exists()
        assert inspect_db.read_bytes() == before


def _runs(db: Path) -> int:
    import sqlite3

    return sqlite3.connect(db).execute("select count(*) from runs").fetchone()[0]


@pytest.mark.parametrize("script, args", [
    ("run_backtest.py", ["--cash", "inf"]),
    ("run_backtest.py", ["--fee-bps", "nan"]),
    ("run_paper.py", ["--slippage-bps", "nan", "--exchange-url", "http://127.0.0.1:9"]),
    ("run_paper.py", ["--timeout-ms", "-5", "--exchange-url", "http://127.0.0.1:9"]),
    ("inspect_trades.py", ["runs", "--limit", "1e309"]),
    ("run_sweep.py", ["--workers", "nan", "--data", "x.csv"]),
    ("download_data.py", ["--timeout-ms", "nan", "--out", "x.csv"]),
])
def test_as_real_processes(script: str, args: list[str], tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    db_args = [] if script == "download_data.py" else ["--db", str(db)]
    done = subprocess.run([sys.executable, str(ROOT / script), *db_args, *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    flag = next(a for a in args if a.startswith("--"))
    assert len(lines) == 1 and flag in lines[0] and "error: " in lines[0], done.stderr
    assert not db.exists() and not (tmp_path / "x.csv").exists()
