"""The HTML report in a real headless browser (Debian's /usr/bin/chromium), offline.

It must render with no console errors and draw its charts; a screenshot must not
be blank. Without Chromium the test skips — unless CI is set, where it fails,
so CI cannot pass without having run it.
"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from tests.inspect.browser import find_chromium, probe, screenshot, with_probe


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        message = ("Chromium not found (looked for $INSPECT_CHROMIUM, or chromium, chromium-browser, google-chrome "
                   "on PATH and /usr/bin/chromium); install it with: apt-get install -y chromium")
        if os.environ.get("CI"):
            pytest.fail(message + " — required when CI is set")
        pytest.skip(message)
    return binary


@pytest.fixture(scope="module")
def report_page(runs_db, tmp_path_factory) -> Path:
    from cli.inspect_trades import main

    out = tmp_path_factory.mktemp("browser") / "report.html"
    assert main(["--db", str(runs_db.path), "report", "zscore-synthetic", "-o", str(out)]) == 0
    return out


def test_report_renders_charts_without_console_errors(chromium, report_page, tmp_path) -> None:
    probed = tmp_path / "probed.html"
    probed.write_text(with_probe(report_page.read_text(encoding="utf-8")), encoding="utf-8")
    result = probe(chromium, probed, tmp_path / "profile")
    assert result["errors"] == []
    assert result["plotly"] == "object"
    plots = {p["id"]: p for p in result["plots"]}
    assert set(plots) == {"chart-main", "chart-losses"}
    main = plots["chart-main"]
    # close, long and short entries, exits (profit, loss), equity and drawdown (strategy and buy-and-hold),
    # signal, ±τ
    assert main["has_layout"] and main["traces"] == 12
    assert main["drawn_traces"] == 12 and main["line_paths"] >= 7
    assert main["width"] > 600 and main["height"] > 800
    assert plots["chart-losses"]["line_paths"] >= 2
    assert result["tables"] >= 4  # run, metrics, folds, trades


def test_probe_catches_errors(chromium, tmp_path) -> None:
    """The check above can fail: a page with a script error is reported."""
    page = tmp_path / "broken.html"
    page.write_text(with_probe("<!DOCTYPE html><html><head><title>x</title></head><body>"
                               "<script>undefinedFunction();</script><script>console.error('bad')</script>"
                               "<img src='https://example.invalid/x.png'></body></html>"), encoding="utf-8")
    errors = probe(chromium, page, tmp_path / "profile")["errors"]
    assert any("undefinedFunction" in e for e in errors), errors
    assert any("console.error: bad" in e for e in errors), errors
    assert any("resource failed" in e for e in errors), errors


def test_screenshot_is_not_blank(chromium, report_page, tmp_path) -> None:
    shot = tmp_path / "shot.png"
    screenshot(chromium, report_page, shot, tmp_path / "profile", 1280, 2000)
    image = mpimg.imread(shot)[..., :3]
    assert image.shape[:2] == (2000, 1280)
    assert float(np.std(image)) > 0.05
    # The chart lines are coloured (blue, orange, red, green); text is black or grey.
    colourful = (image.max(axis=2) - image.min(axis=2)) > 0.25
    assert int(colourful.sum()) > 5_000
