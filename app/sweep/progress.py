"""The sweep's progress bar on stderr: done/total, running, failed, ETA and the best metric so far."""
from __future__ import annotations

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


class SweepProgress:
    """A rich progress bar (stdout stays free for --json). Use as a context manager."""

    def __init__(self, metric: str, enabled: bool = True) -> None:
        self.metric = metric
        self.bar = Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[running]} running · {task.fields[failed]} failed · "
                                       "best {task.fields[best]}"),
                            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                            console=Console(stderr=True), disable=not enabled, transient=False)
        self.task = self.bar.add_task("sweep", total=0, running=0, failed=0, best="–")

    def __enter__(self) -> "SweepProgress":
        return self  # shown from start(): a sweep refused while it is set up prints its one error line only

    def __exit__(self, *exc: object) -> None:
        if self.bar.live.is_started:
            self.bar.stop()

    def start(self, total: int, done: int, failed: int) -> None:
        self.bar.update(self.task, total=total, completed=done + failed, failed=failed)
        if not self.bar.live.is_started:
            self.bar.start()

    def add_total(self, n: int) -> None:
        total = self.bar.tasks[0].total or 0
        self.bar.update(self.task, total=total + n)

    def update(self, done: int, running: int, failed: int, best: float | None) -> None:
        shown = "–" if best is None else f"{self.metric} {best:.3f}"
        self.bar.update(self.task, completed=done + failed, running=running, failed=failed, best=shown)
