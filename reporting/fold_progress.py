"""A rich progress bar over walk-forward folds (fold k/N, last val loss, ETA), on stderr.

The strategy calls it once per fold (``on_fold``); it never touches stdout, so
``--json`` output stays strict JSON.
"""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class FoldProgress:
    """Context manager; call the instance as ``on_fold(fold, reused)``."""

    def __init__(self, total_folds: int, console: Console | None = None) -> None:
        self.total = max(1, total_folds)
        self.seconds = 0.0
        self.count = 0
        self._progress = Progress(
            TextColumn("[bold]walk-forward[/bold] fold"), MofNCompleteColumn(), BarColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console or Console(stderr=True), transient=False)
        self._task = self._progress.add_task("folds", total=self.total, status="")

    def __enter__(self) -> FoldProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.stop()

    def __call__(self, fold: Any, reused: bool) -> None:
        self.count += 1
        self.seconds += fold.seconds
        val = "–" if fold.val_loss is None else f"{fold.val_loss:.3f}"
        status = f"{'reused' if reused else 'trained'}, val loss {val}, {self.seconds:.1f}s training"
        self._progress.update(self._task, completed=min(self.count, self.total), status=status)
