"""Bad input gives one line on stderr and a non-zero exit, never a traceback."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _one_line_error(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("inspect_trades.py: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, err)


def test_unknown_run(runs_db, cli) -> None:
    for command in ("show", "trades", "equity", "orders", "report"):
        extra = ["-o", "x.html"] if command == "report" else []
        result = cli("--db", runs_db.path, command, "no-such-run", *extra)
        assert result.status == 1 and result.out == ""
        _one_line_error(result.err, "no-such-run")
    result = cli("--db", runs_db.path, "compare", "golden-run", "nope")
    assert result.status == 1
    _one_line_error(result.err, "nope")


def test_missing_file(tmp_path, cli) -> None:
    result = cli("--db", tmp_path / "absent.db", "runs")
    assert result.status == 1
    _one_line_error(result.err, "not found", "absent.db")
    assert not (tmp_path / "absent.db").exists()  # read-only: never creates a database


@pytest.mark.parametrize("content", [b"", b"hello, not a database\n", bytes(range(256)) * 20],
                         ids=["empty", "text", "binary"])
def test_not_a_database(tmp_path, cli, content: bytes) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(content)
    result = cli("--db", path, "runs")
    assert result.status == 1
    _one_line_error(result.err)
    assert path.read_bytes() == content


def test_other_sqlite_database(tmp_path, cli) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("create table things (x)")
    result = cli("--db", path, "runs")
    assert result.status == 1
    _one_line_error(result.err, "schema")


def test_directory(tmp_path, cli) -> None:
    result = cli("--db", tmp_path, "runs")
    assert result.status == 1
    _one_line_error(result.err, "directory")


def test_bad_url(cli) -> None:
    result = cli("--db", "nosuchdialect://host/db", "runs")
    assert result.status == 1
    _one_line_error(result.err)
    result = cli("--db", "nosuchdialect://trader:s3cret@host/db", "runs")
    assert result.status == 1
    _one_line_error(result.err)
    assert "s3cret" not in result.err and "trader:***@host" in result.err


def test_incompatible_schema_version_as_a_real_process(runs_db, tmp_path) -> None:
    path = tmp_path / "future.db"
    path.write_bytes(runs_db.path.read_bytes())
    with sqlite3.connect(path) as conn:
        conn.execute("update meta set value = '999' where key = 'schema_version'")
    done = subprocess.run([sys.executable, "inspect_trades.py", "--db", str(path), "show", "golden-run"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    _one_line_error(done.stderr, "schema version 999", "incompatible")


def test_unknown_run_as_a_real_process(runs_db) -> None:
    done = subprocess.run([sys.executable, "inspect_trades.py", "--db", str(runs_db.path), "trades", "deadbeefcafe"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    _one_line_error(done.stderr, "deadbeefcafe")


def test_bad_options_are_usage_errors(runs_db, cli) -> None:
    for args in (["trades", "golden-run", "--from", "yesterday"], ["trades", "golden-run", "--side", "up"],
                 ["trades", "golden-run", "--limit", "-1"], ["report", "golden-run", "--png-size", "big"],
                 ["runs", "--format", "xml"]):
        result = cli("--db", runs_db.path, *args)
        assert result.status == 2, args
        assert "Traceback" not in result.err and "error:" in result.err


def test_inconsistent_filters(runs_db, cli) -> None:
    result = cli("--db", runs_db.path, "trades", "golden-run", "--from", "2024-02-01", "--to", "2024-01-01")
    assert result.status == 1
    _one_line_error(result.err, "before")
    result = cli("--db", runs_db.path, "trades", "golden-run", "--min-pnl", "5", "--max-pnl", "1")
    assert result.status == 1
    _one_line_error(result.err, "--min-pnl")


def test_unwritable_report_path(runs_db, cli, tmp_path) -> None:
    result = cli("--db", runs_db.path, "report", "golden-run", "-o", tmp_path / "no" / "such" / "dir" / "r.html")
    assert result.status == 1
    _one_line_error(result.err, "does not exist")
    result = cli("--db", runs_db.path, "report", "golden-run")
    assert result.status == 1
    _one_line_error(result.err, "-o FILE.html")


def test_broken_pipe_is_quiet(runs_db) -> None:
    """`... --format csv | head -1`: the reader goes away early; no traceback, no error."""
    done = subprocess.run(f"'{sys.executable}' inspect_trades.py --db '{runs_db.path}' equity zscore-synthetic "
                          "--format csv | head -1", shell=True, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.startswith("ts,time,cash")
    assert "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr
