"""Issue 8 items 2, 3, 6, 7 and 8: strict JSON, a reused --name, arguments checked before any row or
request, credentials in --exchange-url, an over-long --name and a read-only --db folder.

run_paper.py runs as a real process with the real ccxt client against the loopback exchange."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import run_backtest
from feeds.synthetic import synthetic_bars
from domain.redact import mask_url
from domain.strict_json import dumps_strict
from store.db import init_db
from store.repository import RunNameTaken, RunSpec, create_run
from tests.paper.helpers import PaperProcess, frozen_server, make_bars, paper_args, run_row, run_to_end

ROOT = Path(__file__).resolve().parents[2]


def _strict(text: str) -> object:
    def refuse(name: str) -> None:
        raise AssertionError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def candles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "bars.csv"
    synthetic_bars(400, seed=3).to_frame().to_csv(path, index=False)
    return path


def test_json_output_is_strict_even_without_trades(candles: Path, tmp_path: Path, capsys) -> None:
    db = tmp_path / "runs.db"
    # Trading starts at the last bar: no trade, one equity point, undefined ratios.
    rc = run_backtest.main(["--data", str(candles), "--strategy", "zscore", "--db", str(db), "--json",
                            "--trade-from", str(int(synthetic_bars(400, seed=3).ts_ms[-1]))])
    out = capsys.readouterr().out
    assert rc == 0
    payload = _strict(out)
    assert payload["metrics"]["trades"] == 0 and payload["metrics"]["win_rate"] is None
    stored = sqlite3.connect(db).execute("select metrics, report from runs").fetchone()
    for text in stored:
        _strict(text)  # the database holds strict JSON too (PostgreSQL's JSON type refuses NaN)


def test_strict_json_helper_turns_undefined_numbers_into_null() -> None:
    import numpy as np

    text = dumps_strict({"a": float("nan"), "b": [np.float64("inf"), -np.inf], "c": np.int64(3), "d": (1.5,)})
    assert _strict(text) == {"a": None, "b": [None, None], "c": 3, "d": [1.5]}


def test_a_reused_name_is_one_line_naming_the_run_that_has_it(candles: Path, tmp_path: Path, capsys) -> None:
    db = tmp_path / "runs.db"
    args = ["--data", str(candles), "--strategy", "zscore", "--db", str(db), "--name", "dup", "--json"]
    assert run_backtest.main(args) == 0
    first = _strict(capsys.readouterr().out)["run_id"]
    assert run_backtest.main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and captured.out == "", captured.err
    assert "'dup' is already used by run " + first[:12] in lines[0] and "created 20" in lines[0]
    assert "INSERT" not in captured.err and "Traceback" not in captured.err
    assert sqlite3.connect(db).execute("select count(*) from runs").fetchone()[0] == 1


def test_a_name_taken_between_check_and_insert_still_names_the_owner(tmp_path: Path) -> None:
    """The race: another process inserts the name after our check; the INSERT's IntegrityError
    becomes the same one-line message."""
    engine = init_db(str(tmp_path / "runs.db"))
    spec = RunSpec(mode="backtest", strategy="zscore", initial_cash=1.0, name="race")
    owner = create_run(engine, spec)
    with pytest.raises(RunNameTaken, match=f"already used by run {owner[:12]}"):
        create_run(engine, spec)


def test_a_100000_character_name_is_refused_before_anything_is_written(candles: Path, tmp_path: Path,
                                                                      capsys) -> None:
    db = tmp_path / "runs.db"
    rc = run_backtest.main(["--data", str(candles), "--strategy", "zscore", "--db", str(db), "--name", "n" * 100_000])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1 and len(err) < 300, err[:300]
    assert "--name" in err and "100,000 characters" in err and "at most 200" in err
    assert not db.exists()


def _as_unprivileged(cmd: list[str]) -> list[str]:
    """root ignores folder permissions: run the child as 'nobody' then (setpriv, util-linux)."""
    if os.geteuid() != 0:
        return cmd
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]


def test_db_in_a_read_only_folder_is_one_line_and_exit_2(candles: Path) -> None:
    import shutil
    import tempfile

    probe = subprocess.run(_as_unprivileged([sys.executable, "-c", f"open({str(ROOT / 'run_backtest.py')!r}).close()"]),
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:  # as root, only an unprivileged child sees folder permissions
        pytest.skip("this checkout (or its .venv) is not readable by the unprivileged user 'nobody', and root "
                    "ignores a read-only folder: clone into a world-readable folder to run this test")
    base = Path(tempfile.mkdtemp(prefix="ro-db-"))  # pytest's tmp folders are private to root
    try:
        base.chmod(0o755)
        data = base / "bars.csv"
        shutil.copy(candles, data)
        data.chmod(0o644)
        ro = base / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        for db in (ro / "sub" / "runs.db", ro / "runs.db"):
            done = subprocess.run(_as_unprivileged([sys.executable, "run_backtest.py", "--data", str(data),
                                                    "--strategy", "zscore", "--db", str(db)]),
                                  cwd=ROOT, capture_output=True, text=True, timeout=120)
            assert done.returncode == 2, done.stderr
            lines = done.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: ") and str(ro) in lines[0], done.stderr
            assert not db.exists()
    finally:
        (base / "ro").chmod(0o755)
        shutil.rmtree(base)


@pytest.fixture(scope="module")
def bars():
    return make_bars(400, 5)


@pytest.mark.parametrize("flag, value", [("--timeout-ms", "-5"), ("--warmup-bars", "-5"), ("--poll-interval", "0"),
                                         ("--train-steps", "0")])
def test_paper_arguments_are_checked_before_any_request_or_row(bars, tmp_path: Path, flag: str, value: str) -> None:
    """Once: --timeout-ms -5 was retried as if the exchange were down; --warmup-bars -5 accepted;
    --poll-interval 0 and --train-steps 0 failed only after a 'failed' run row existed."""
    server = frozen_server(bars, 100)
    try:
        db = tmp_path / "paper.db"
        strategy = "score" if flag == "--train-steps" else "zscore"
        proc = PaperProcess(paper_args(server.url, db, "early", strategy=strategy, max_bars=3, extra=[flag, value]))
        rc = proc.finish(60)
        requests = server.requests
    finally:
        server.stop()
    lines = proc.stderr_text().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith(f"error: {flag} must be"), proc.stderr_text()
    assert requests == []  # not one request reached the exchange
    assert not db.exists()


SECRET = "hunter2SECRETpw"


def test_credentials_in_the_exchange_url_are_stored_logged_and_shown_nowhere(bars, tmp_path: Path) -> None:
    db = tmp_path / "paper.db"
    server = frozen_server(bars, 100)
    url = server.url.replace("http://", f"http://trader:{SECRET}@")
    server.inject("http_503", count=2, path="klines")  # retry warnings quote the failing request's URL
    proc, rc = run_to_end(server, paper_args(url, db, "masked", max_bars=5), speed=600)
    assert rc == 0, proc.stderr_text()[-2000:]
    assert "503" in proc.stderr_text()  # the warnings were written ...
    assert SECRET not in proc.stderr_text() and SECRET not in proc.stdout_text()  # ... without the password
    run = run_row(db, name="masked")
    assert mask_url(url) in run["data_source"] and "trader:***@" in run["data_source"]
    html = tmp_path / "report.html"
    outputs = []
    for args in (["show", "masked"], ["show", "masked", "--format", "json"], ["report", "masked", "-o", str(html)]):
        done = subprocess.run([sys.executable, "inspect_trades.py", "--db", str(db), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        outputs += [done.stdout, done.stderr]
    outputs.append(html.read_text())
    assert "trader:***@" in outputs[0] + outputs[2]
    for text in outputs:
        assert SECRET not in text
    for path in tmp_path.glob("paper.db*"):  # the database and any WAL/SHM files, byte for byte
        assert SECRET.encode() not in path.read_bytes(), path


def test_runs_stored_before_masking_are_shown_masked(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    init_db(str(db)).dispose()
    with sqlite3.connect(db) as con:  # a run written by an older version, secrets in clear
        con.execute("INSERT INTO runs (id, name, mode, strategy, engine, params, data_source, status, created_at, "
                    "updated_at, bars_processed, initial_cash) VALUES ('abcdef0123456789', 'old', 'paper', 'zscore', "
                    "'native', ?, ?, 'stopped', '2026-01-01', '2026-01-01', 0, 1000.0)",
                    (json.dumps({"exchange_url": f"http://u:{SECRET}@h/?apiKey={SECRET}x"}),
                     f"binance:BTC/USDT:1m via http://u:{SECRET}@h/?signature={SECRET}y"))
    html = tmp_path / "r.html"
    for args in (["show", "old"], ["show", "old", "--format", "json"], ["report", "old", "-o", str(html)]):
        done = subprocess.run([sys.executable, "inspect_trades.py", "--db", str(db), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert SECRET not in done.stdout + done.stderr, args
    if html.exists():
        assert SECRET not in html.read_text()


def test_mask_url_rules() -> None:
    assert mask_url("http://user:password@host:8080/api?symbol=BTC&apiKey=abc&X-Signature=s&token=t") == \
        "http://user:***@host:8080/api?symbol=BTC&apiKey=***&X-Signature=***&token=***"
    assert mask_url("https://APIKEY123@host/x") == "https://***@host/x"
    assert mask_url("postgresql+psycopg://trader:pw@db:5432/runs") == "postgresql+psycopg://trader:***@db:5432/runs"
    assert mask_url("http://127.0.0.1:8765") == "http://127.0.0.1:8765"
    assert mask_url("http://h/?passphrase=a&PASSWORD=b&secret_key=c&limit=5") == \
        "http://h/?passphrase=***&PASSWORD=***&secret_key=***&limit=5"
