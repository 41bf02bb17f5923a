"""models.walk_forward on its own: the loop's schedule and gap skipping, and stored folds of both formats."""
from __future__ import annotations

import numpy as np

from models.checkpoint import checkpoint_to_bytes
from models.features import FeatureSpec
from models.training import TrainConfig
from models.walk_forward import WalkForward, WalkForwardConfig, fold_from_checkpoint

HOUR = 3_600_000
CFG = WalkForwardConfig(train_days=10, retrain_days=2, sample_check_samples=0, min_train_rows=50, model_target="state",
                        train=TrainConfig(hidden=16, depth=1, max_steps=40, warm_start_steps=10, batch_size=64,
                                          eval_every_steps=20))


def test_update_starts_folds_on_schedule_and_skips_blocks_a_gap_jumped() -> None:
    walk = WalkForward(CFG, FeatureSpec())
    rng = np.random.default_rng(0)
    started = []
    hours = list(range(0, 14 * 24)) + list(range(19 * 24, 22 * 24))  # a 5-day gap after day 14
    for h in hours:
        fold = walk.update(h * HOUR, rng.standard_normal(6) * 0.01, 100.0 + h * 0.01)
        if fold is not None:
            started.append((h, fold.trade_start_ts // HOUR, fold.trade_end_ts // HOUR))
            assert fold.train_end_ts == h * HOUR  # fitted at this bar's close on rows up to it, none later
    # blocks start at day 10 and 12; after the gap the first bar (day 19) falls in the block of day 18
    assert started == [(240, 240, 288), (288, 288, 336), (456, 432, 480), (480, 480, 528)]


def test_a_first_version_checkpoint_still_loads() -> None:
    walk = WalkForward(CFG, FeatureSpec())
    rng = np.random.default_rng(1)
    fold = None
    for h in range(10 * 24 + 1):
        fold = walk.update(h * HOUR, rng.standard_normal(6) * 0.01, 100.0) or fold
    assert fold is not None
    old = checkpoint_to_bytes(fold.model, config=CFG.to_dict(), fold_index=0, train_start_ms=fold.train_start_ts,
                              train_end_ms=fold.train_end_ts,
                              extra={"threshold": fold.threshold, "signal_sigma": fold.signal_sigma,
                                     "trade_start_ms": fold.trade_start_ts, "trade_end_ms": fold.trade_end_ts,
                                     "train_norms_sorted": list(fold.calibration.train_norms_sorted)})
    for blob in (old, fold.checkpoint):
        again = fold_from_checkpoint(blob)
        assert again.calibration == fold.calibration
        rows = rng.standard_normal((4, 6)) * 0.01
        np.testing.assert_array_equal(again.signal(rows)[0], fold.signal(rows)[0])
