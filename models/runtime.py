"""Torch thread control. One thread by default: on 2-core machines, with 2 threads a
busy second core made an Adam step ~60x slower (117 ms vs 1.9 ms), while an idle
machine gained at most 1.1-1.6x (notes/score-model-prototype.md).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with torch.set_num_threads(n), restoring the previous count after."""
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
