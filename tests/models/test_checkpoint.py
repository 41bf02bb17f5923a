from __future__ import annotations

import numpy as np
import pytest
import torch

from models.checkpoint import ScoreModel, checkpoint_from_bytes, checkpoint_to_bytes
from models.features import Standardizer
from models.training import TrainConfig, train_score_model

CONFIG = TrainConfig(hidden=32, depth=2, n_sigmas=6, sigma_min=0.05, batch_size=128, max_steps=100,
                     eval_every_steps=50, seed=0)


@pytest.fixture(scope="module")
def trained() -> tuple[ScoreModel, np.ndarray]:
    rng = np.random.default_rng(0)
    raw = rng.standard_normal((1500, 6)) * [0.01, 0.02, 0.05, 0.5, 0.3, 1.0] + [0.0, 0.0, 0.0, -5.0, 0.0, 0.0]
    standardizer = Standardizer.fit(raw, names=tuple(f"f{i}" for i in range(6)))
    result = train_score_model(standardizer.transform(raw), CONFIG)
    return ScoreModel(result.model, result.sigmas, standardizer), raw


def test_round_trip_gives_identical_scores_and_metadata(trained: tuple[ScoreModel, np.ndarray]) -> None:
    model, raw = trained
    blob = checkpoint_to_bytes(model, config=CONFIG.to_dict(), fold_index=7, train_start_ms=1_600_000_000_000,
                               train_end_ms=1_631_536_000_000, extra={"threshold": 3.2, "val_losses": [0.5, 0.4]})
    loaded = checkpoint_from_bytes(blob)
    for sigma in (float(model.sigmas[-1]), 0.6, float(model.sigmas[0])):
        assert np.array_equal(loaded.model.score_features(raw, sigma), model.score_features(raw, sigma))
    x = torch.as_tensor(model.standardizer.transform(raw[:50]), dtype=torch.float32)
    with torch.inference_mode():
        assert torch.equal(loaded.model.network(x, 0.6), model.network(x, 0.6))
    np.testing.assert_array_equal(loaded.model.sigmas, model.sigmas)
    assert loaded.model.standardizer.names == model.standardizer.names
    assert TrainConfig.from_dict(loaded.config) == CONFIG
    assert (loaded.fold_index, loaded.train_start_ms, loaded.train_end_ms) == (7, 1_600_000_000_000, 1_631_536_000_000)
    assert loaded.extra == {"threshold": 3.2, "val_losses": [0.5, 0.4]}


def test_score_features_standardises_with_the_training_statistics(trained: tuple[ScoreModel, np.ndarray]) -> None:
    model, raw = trained
    z = (raw[:20] - raw.mean(axis=0)) / raw.std(axis=0)
    np.testing.assert_allclose(model.score_features(raw[:20], 0.6), model.score(z, 0.6), rtol=1e-9, atol=1e-12)
    with torch.no_grad():
        ref = model.network(torch.as_tensor(z, dtype=torch.float32), 0.6).double().numpy()
    np.testing.assert_allclose(model.score(z, 0.6), ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())


def test_batch_scoring_equals_per_bar_scoring(trained: tuple[ScoreModel, np.ndarray]) -> None:
    """DESIGN: a backtest may score a fold in one batch, but it must equal per-bar queries."""
    model, raw = trained
    batch = model.score_features(raw, 0.6)
    per_bar = np.stack([model.score_features(row, 0.6) for row in raw])
    diff = float(np.abs(batch - per_bar).max())
    print(f"max |batch - per-bar| = {diff:.1e}")
    np.testing.assert_allclose(batch, per_bar, rtol=1e-12, atol=1e-12)


def test_bad_bytes_and_wrong_widths_raise(trained: tuple[ScoreModel, np.ndarray]) -> None:
    model, raw = trained
    with pytest.raises(ValueError, match="checkpoint"):
        checkpoint_from_bytes(b"not a checkpoint")
    with pytest.raises(ValueError):
        model.score(np.zeros(5), 0.6)
    with pytest.raises(ValueError):
        ScoreModel(model.network, model.sigmas, Standardizer.fit(raw[:, :3]))
    with pytest.raises(ValueError):
        checkpoint_to_bytes(model, config={}, fold_index=0, train_start_ms=10, train_end_ms=5)
