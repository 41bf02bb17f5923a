"""The HTML report (self-contained, escaped) and the PNG (valid, expected size)."""
from __future__ import annotations

import re

import matplotlib.image as mpimg
import numpy as np

from inspect_tools.charts import figure_html, losses_figure, main_figure
from inspect_tools.html_report import _rows_table
from inspect_tools.queries import TradeFilter, open_reader
from inspect_tools.report_data import load_report_data
from inspect_tools.views import Column
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


def test_fast_figure_html_is_plotlys_own_output(runs_db) -> None:
    """figure_html only skips plotly's slow JSON fallback: the page must not change by a byte."""
    with open_reader(str(runs_db.path)) as reader:
        data = load_report_data(reader, reader.resolve("zscore-synthetic"))
    assert len(data.trades) > 0 and len(data.signals) > 0 and data.folds
    for fig in (main_figure(data, 500), main_figure(data, 0), losses_figure(data.folds)):
        options = dict(full_html=False, include_plotlyjs=False, div_id="chart", config={"displaylogo": False})
        assert figure_html(fig, **options) == fig.to_html(**options)


def test_trade_columns_are_the_trade_rows_transposed(runs_db) -> None:
    with open_reader(str(runs_db.path)) as reader:
        run_id = reader.resolve("zscore-synthetic")["id"]
        for flt in (TradeFilter(), TradeFilter(side="short", min_pnl=0.0), TradeFilter(reasons=("nothing",))):
            rows, columns = reader.trades(run_id, flt), reader.trade_columns(run_id, flt)
            assert len(columns) == len(rows)
            assert list(columns.columns) == list(rows[0] if rows else columns.columns)
            assert [dict(zip(columns.columns, values)) for values in zip(*columns.columns.values())] == rows


def test_table_cells_escape_text_and_colour_signs() -> None:
    columns = [Column("reason", "reason"), Column("pnl", "P&L", "money", signed=True), Column("n", "n", "int")]
    page = _rows_table(columns, [{"reason": "<b>&", "pnl": -1234.5, "n": True}, {"pnl": 2.0, "n": 3}])
    assert page == ("<table><thead><tr><th class=''>reason</th><th class='num'>P&amp;L</th><th class='num'>n</th>"
                    "</tr></thead><tbody><tr><td class=''>&lt;b&gt;&amp;</td><td class='num neg'>-1,234.50</td>"
                    "<td class='num'>yes</td></tr><tr><td class=''>—</td><td class='num pos'>2.00</td>"
                    "<td class='num'>3</td></tr></tbody></table>")
