"""Plain records the model layer hands to storage (no torch, no SQLAlchemy: importable anywhere)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelVersionRecord:
    """One walk-forward fold's trained model, as stored."""

    fold_index: int
    train_start_ts: int
    train_end_ts: int
    trade_start_ts: int | None
    trade_end_ts: int | None
    objective: str
    seed: int
    threshold: float | None
    train_loss: float | None
    val_loss: float | None
    steps: int | None
    train_seconds: float | None
    config: dict[str, Any]
    losses: dict[str, Any] | None
    sample_check: dict[str, Any] | None
    checkpoint: bytes | None
