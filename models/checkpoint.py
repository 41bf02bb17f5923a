"""A trained fold's model as one object (`ScoreModel`) and as bytes (`checkpoint_to_bytes`).

The bytes carry enough to rebuild and audit the model alone: network args and
weights, the σ ladder, the standardiser, the training config, the fold index,
the training window [train_start_ms, train_end_ms], an ensemble's further
members, the walk-forward calibration (a typed record's plain fields) and a
free `extra` dict for callers outside the walk-forward. They hold only tensors and plain Python values, so
loading uses torch.load(weights_only=True) and runs no pickled code.
Storing the bytes (DB, file) is the caller's job.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from models.features import Standardizer
from models.network import NumpyScoreMLP, ScoreMLP
from models.runtime import torch_threads

FORMAT_VERSION = 1


class ScoreModel:
    """Standardiser + σ-conditioned network + σ ladder, with a numpy fast path for queries.

    `score` takes standardised features; `score_features` takes raw feature rows
    (as from compute_features / IncrementalFeatures). Both accept (d,) or (n, d),
    and one batched call equals per-row calls (same numpy maths row by row).
    """

    def __init__(self, network: ScoreMLP, sigmas: np.ndarray, standardizer: Standardizer) -> None:
        sigmas = np.asarray(sigmas, dtype=np.float64)
        if standardizer.mean.shape != (network.dim,):
            raise ValueError(f"standardizer has {standardizer.mean.shape} columns, network dim is {network.dim}")
        self.network = network.eval()
        self.sigmas = sigmas
        self.standardizer = standardizer
        self.fast = NumpyScoreMLP.from_torch(network)

    @property
    def dim(self) -> int:
        return self.network.dim

    def score(self, x_std: np.ndarray, sigma: float) -> np.ndarray:
        """s_θ(x, σ) for standardised x: (d,) or (n, d) -> same shape."""
        x = np.asarray(x_std, dtype=np.float64)
        if x.shape[-1] != self.dim:
            raise ValueError(f"expected {self.dim} features, got shape {x.shape}")
        return self.fast.score(x, sigma)

    def score32(self, x_std: np.ndarray, sigma: float) -> np.ndarray:
        """The same score through the float32 torch network (one thread): faster on big batches,
        equal to `score` only to float32 rounding. For calibration on whole windows, not decisions."""
        x = torch.as_tensor(np.asarray(x_std), dtype=torch.float32)
        with torch_threads(1), torch.inference_mode():
            return self.network(x, float(sigma)).double().numpy()

    def score_features(self, features_raw: np.ndarray, sigma: float) -> np.ndarray:
        """Standardise raw feature rows with the training window's statistics, then score."""
        return self.score(self.standardizer.transform(features_raw), sigma)


@dataclass
class Checkpoint:
    """A loaded checkpoint: the usable model plus its audit metadata."""

    model: ScoreModel
    config: dict[str, Any]
    fold_index: int
    train_start_ms: int
    train_end_ms: int
    extra: dict[str, Any] = field(default_factory=dict)
    members: list[ScoreModel] = field(default_factory=list)  # every ensemble member; members[0] is `model`
    calibration: dict[str, Any] = field(default_factory=dict)


def _model_payload(model: ScoreModel) -> dict[str, Any]:
    return {
        "model_args": dict(model.network.args),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.network.state_dict().items()},
        "sigmas": [float(s) for s in model.sigmas],
        "standardizer": model.standardizer.to_dict(),
    }


def _model_from_payload(payload: dict[str, Any]) -> ScoreModel:
    network = ScoreMLP(**payload["model_args"])
    network.load_state_dict(payload["state_dict"])
    return ScoreModel(network, np.asarray(payload["sigmas"]), Standardizer.from_dict(payload["standardizer"]))


def checkpoint_to_bytes(
    model: ScoreModel,
    *,
    config: dict[str, Any],
    fold_index: int,
    train_start_ms: int,
    train_end_ms: int,
    extra: dict[str, Any] | None = None,
    members: list[ScoreModel] | None = None,
    calibration: dict[str, Any] | None = None,
) -> bytes:
    """Serialise with torch.save. `config`, `extra` and `calibration` must hold plain values
    (str, int, float, bool, None, lists, dicts). `members`: further ensemble members after `model`."""
    if train_end_ms < train_start_ms:
        raise ValueError(f"train_end_ms {train_end_ms} < train_start_ms {train_start_ms}")
    payload = {
        "format_version": FORMAT_VERSION,
        **_model_payload(model),
        "members": [_model_payload(m) for m in (members or [])],
        "calibration": dict(calibration or {}),
        "config": dict(config),
        "fold_index": int(fold_index),
        "train_start_ms": int(train_start_ms),
        "train_end_ms": int(train_end_ms),
        "extra": dict(extra or {}),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def checkpoint_from_bytes(data: bytes) -> Checkpoint:
    """Rebuild a Checkpoint; raises ValueError on bytes that are not a checkpoint of this format."""
    try:
        payload = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises several types (UnpicklingError, RuntimeError, EOFError)
        raise ValueError(f"not a readable score-model checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"unsupported checkpoint format: {payload.get('format_version') if isinstance(payload, dict) else type(payload)}")
    model = _model_from_payload(payload)
    return Checkpoint(
        model=model,
        config=payload["config"],
        fold_index=payload["fold_index"],
        train_start_ms=payload["train_start_ms"],
        train_end_ms=payload["train_end_ms"],
        extra=payload["extra"],
        members=[model] + [_model_from_payload(m) for m in payload.get("members", [])],
        calibration=payload.get("calibration", {}),
    )
