"""The HTML report (self-contained, escaped) and the PNG (valid, expected size)."""
from __future__ import annotations

import re

import matplotlib.image as mpimg
import numpy as np

from store.repository import RunSpec, create_run
from tests.inspect.factories import ScriptedStrategy, golden_bars, make_db, store_run, store_zscore_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_html_is_self_contained(runs_db, cli, tmp_path) -> None:
    out = tmp_path / "report.html"
    result = cli("--db", runs_db.path, "report", "zscore-synthetic", "-o", out)
    assert result.status == 0, result.err
    assert f"wrote {out}" in result.out
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("Plotly.newPlot") >= 2  # price/equity/drawdown/signal and the fold losses
    assert page.count("* plotly.js v") == 1  # the library, inline, exactly once
    assert not re.search(r"<script[^>]*\bsrc=", page), "plotly.js must be inline, not fetched"
    assert not re.search(r"<link[^>]*\bhref=", page)
    for text in ("buy-and-hold", "z-score", "Trades (144)", "Model versions", "threshold", "approximates"):
        assert text in page, text
    assert out.stat().st_mode & 0o777 != 0o600  # an ordinary file, not mkstemp's private mode


def test_stored_text_is_escaped(tmp_path, cli) -> None:
    path = tmp_path / "evil.db"
    db = make_db(path)
    store_run(db, golden_bars(), ScriptedStrategy(), name="<img src=x onerror=alert(1)>",
              params={"note": "</script><b>bold</b>"})
    db.dispose()
    out = tmp_path / "r.html"
    result = cli("--db", path, "report", "<img src=x onerror=alert(1)>", "-o", out)
    assert result.status == 0, result.err
    page = out.read_text(encoding="utf-8")
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "</script><b>" not in page


def test_png_has_the_requested_size(runs_db, cli, tmp_path) -> None:
    out = tmp_path / "equity.png"
    result = cli("--db", runs_db.path, "report", "golden-run", "--png", out, "--png-size", "900x500")
    assert result.status == 0, result.err
    assert out.read_bytes()[:8] == PNG_MAGIC
    image = mpimg.imread(out)
    assert image.shape[:2] == (500, 900)
    assert float(np.std(image[..., :3])) > 0.05  # not blank
    default = tmp_path / "default.png"
    assert cli("--db", runs_db.path, "report", "zscore-synthetic", "--png", default).status == 0
    assert mpimg.imread(default).shape[:2] == (700, 1200)


def test_report_of_a_run_without_rows(runs_db, cli, tmp_path) -> None:
    """A paper run that has not processed a bar yet still gets a report (saying so)."""
    html_out, png_out = tmp_path / "empty.html", tmp_path / "empty.png"
    result = cli("--db", runs_db.path, "report", "fresh-paper", "-o", html_out, "--png", png_out)
    assert result.status == 0, result.err
    assert "No equity rows stored" in html_out.read_text(encoding="utf-8")
    assert png_out.read_bytes()[:8] == PNG_MAGIC


def test_thinning_keeps_the_page_small(tmp_path, cli) -> None:
    path = tmp_path / "big.db"
    db = make_db(path)
    create_run(db, RunSpec(mode="backtest", strategy="x", initial_cash=1.0))  # a second run in the file
    store_zscore_run(db, n_bars=12_000, seed=3, name="big", folds=0)
    db.dispose()
    small, full = tmp_path / "small.html", tmp_path / "full.html"
    assert cli("--db", path, "report", "big", "-o", small, "--max-points", "1000").status == 0
    assert cli("--db", path, "report", "big", "-o", full, "--max-points", "0").status == 0
    page = small.read_text(encoding="utf-8")
    assert "thinned to about 1,000 points" in page
    assert small.stat().st_size < full.stat().st_size
