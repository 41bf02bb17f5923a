"""The score strategy's settings: a plain frozen dataclass, importable without torch.

Why apart from strategies/score_reversion.py (which runs the models, so imports torch):
reading, validating and storing these settings (option parsing, the registry, a sweep's
driver planning many runs) should not load torch.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from models.config import WalkForwardConfig

ENTRY_ORDERS = ("market", "passive")

# DESIGN.md's window defaults are for 1h bars (365 and 30 days); on other timeframes the
# same number of bars is used, like the feature windows, so a 1m paper run warms up on
# ~6 days of candles instead of a year.
DEFAULT_TRAIN_BARS = 8760
DEFAULT_RETRAIN_BARS = 720


@dataclass(frozen=True)
class ScoreReversionConfig:
    walk_forward: WalkForwardConfig = field(default_factory=WalkForwardConfig)
    max_hold_bars: int = 48  # state target: exit after this many bars in a position
    stop_loss_pct: float = 5.0  # protective stop distance from the signal bar's close, in % (0 = none)
    unusual_gate: float | None = None  # skip entries when unusualness exceeds this quantile (e.g. 0.999)
    long_only: bool = False  # never open shorts
    cost_margin_pct: float = 0.5  # forecast target: expected move must beat the round-trip cost by this (% of price)
    fee_bps: float = 10.0  # the broker's fee per fill the cost rule assumes (set from the run's --fee-bps)
    slippage_bps: float = 0.0  # the broker's slippage per fill the cost rule assumes
    size_by_confidence: bool = False  # forecast target: fraction = min(1, |mean| / interval half-width)
    exit_on_reversal: bool = True  # forecast target: close when the forecast beats the cost the other way
    maker_fee_bps: float | None = None  # the broker's resting-limit fee (None = fee_bps; set from --maker-fee-bps)
    # Entry orders (default chosen on 2018-08 → 2021-12 at 10 bps, bench/model_eval.py --entries-only):
    entry_order: str = "passive"  # "market": next open; "passive": a resting limit (see the module doc)
    passive_offset_bps: float = 0.0  # passive: limit this far from the signal bar's close, in the trade's favour
    passive_expiry_bars: int = 2  # passive: an unfilled entry is cancelled after this many bars

    def __post_init__(self) -> None:
        if self.entry_order not in ENTRY_ORDERS:
            raise ValueError(f"entry_order must be one of {', '.join(ENTRY_ORDERS)}, got {self.entry_order!r}")
        if not (0 <= self.passive_offset_bps < 1e4) or not math.isfinite(self.passive_offset_bps):
            raise ValueError(f"passive_offset_bps must be in [0, 10000), got {self.passive_offset_bps!r}")
        if isinstance(self.passive_expiry_bars, bool) or int(self.passive_expiry_bars) != self.passive_expiry_bars \
                or self.passive_expiry_bars < 1:
            raise ValueError(f"passive_expiry_bars must be an integer >= 1, got {self.passive_expiry_bars!r}")
        if self.max_hold_bars < 1:
            raise ValueError(f"max_hold_bars must be >= 1, got {self.max_hold_bars}")
        if not 0 <= self.stop_loss_pct < 100:
            raise ValueError(f"stop_loss_pct must be in [0, 100), got {self.stop_loss_pct}")
        if self.unusual_gate is not None and not 0 < self.unusual_gate <= 1:
            raise ValueError(f"unusual_gate must be in (0, 1], got {self.unusual_gate}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["walk_forward"] = self.walk_forward.to_dict()
        return d

    @property
    def passive(self) -> bool:
        return self.entry_order == "passive"

    @property
    def round_trip_cost(self) -> float:
        """Fees and slippage of an entry plus an exit, as a fraction of price. A market entry pays the
        taker fee and slippage twice; a passive entry pays the maker fee (limits fill without slippage)
        and its market exit the taker fee and slippage."""
        taker = self.fee_bps + self.slippage_bps
        if not self.passive:
            return 2.0 * taker / 1e4
        maker = self.fee_bps if self.maker_fee_bps is None else self.maker_fee_bps
        return (maker + taker) / 1e4
