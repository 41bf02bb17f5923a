"""The ``report`` subcommand: a run's HTML report and/or PNG, or a sweep's HTML report.

Apart from the table commands (``commands.py``) so that writing a report imports neither rich
nor the listing code, and the chart libraries only once it is known which output is wanted.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from domain.heap import gc_paused
from inspect_tools.errors import InspectError
from inspect_tools.outfile import write_atomically
from inspect_tools.queries import StoreReader


def cmd_report(args: argparse.Namespace, reader: StoreReader, out: TextIO) -> None:
    if not args.output and not args.png:
        raise InspectError("report needs -o FILE.html and/or --png FILE.png")
    # Imported here: plotly and matplotlib take ~1 s to import, which the other commands need not pay.
    from inspect_tools.html_report import render_html
    from inspect_tools.report_data import load_report_data

    try:
        run = reader.resolve(args.run)
    except InspectError:
        sweep = reader.sweep(args.run)
        if sweep is None:
            raise
        if args.png or not args.output:
            raise InspectError(f"{args.run!r} is a sweep: its report is HTML only (-o FILE.html)") from None
        from inspect_tools.sweep_views import write_sweep_report

        write_sweep_report(reader, sweep, args.output, args.max_points, out)
        return
    # The report builds ~10^5 rows and strings that reference counting frees; each full collection
    # their allocation would trigger walks them and every imported module's objects, finding nothing.
    with gc_paused():
        data = load_report_data(reader, run)
        page = render_html(data, args.max_points) if args.output else None
    if page is not None:
        size = write_atomically(args.output, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
        out.write(f"wrote {args.output} ({size / 1e6:.1f} MB, self-contained HTML)\n")
    if args.png:
        from inspect_tools.png_report import render_png  # matplotlib: imported only for a PNG

        width, height = args.png_size
        size = write_atomically(args.png, lambda tmp: render_png(data, tmp, width, height))
        out.write(f"wrote {args.png} ({width}×{height} px PNG, {size / 1e3:.0f} kB)\n")
