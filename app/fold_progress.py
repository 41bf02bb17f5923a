"""Walk-forward training progress on stderr (one updating line on a terminal)."""
from __future__ import annotations

import sys
from typing import Any


class FoldProgress:
    """Called once per fitted (or reused) model; ``total`` is the number of models the run will use."""

    def __init__(self, total: int) -> None:
        self.total = max(1, total)
        self.tty = sys.stderr.isatty()
        self.seconds = 0.0
        self.count = 0

    def __call__(self, fold: Any, reused: bool) -> None:
        self.count += 1
        self.seconds += fold.seconds
        val = "–" if fold.val_loss is None else f"{fold.val_loss:.3f}"
        line = (f"fold {self.count}/{self.total} {'reused' if reused else 'trained'}: {fold.steps} steps, "
                f"val loss {val}, threshold {fold.threshold:.3f}, {self.seconds:.1f}s training so far")
        if self.tty:
            print("\r" + line.ljust(100), end="", file=sys.stderr, flush=True)
        elif self.count == 1 or self.count % 10 == 0 or self.count == self.total:
            print(line, file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.tty and self.count:
            print(file=sys.stderr)
