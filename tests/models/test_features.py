from __future__ import annotations

import json
import math
import statistics
import time

import numpy as np
import pytest

from models.features import FeatureSpec, IncrementalFeatures, Standardizer, compute_features

SPEC = FeatureSpec()


def make_bars(n: int, seed: int = 0, flat: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """Random-walk 1h bars; `flat` = [start, stop) of bars with an unchanged close; some zero volumes."""
    rng = np.random.default_rng(seed)
    r = 0.01 * rng.standard_normal(n)
    if flat is not None:
        r[flat[0] : flat[1]] = 0.0
    close = 20_000.0 * np.exp(np.cumsum(r))
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) * (1 + 0.002 * rng.random(n))
    low = np.minimum(open_, close) * (1 - 0.002 * rng.random(n))
    volume = rng.lognormal(3.0, 1.0, n)
    volume[rng.random(n) < 0.01] = 0.0
    return {"open_": open_, "high": high, "low": low, "close": close, "volume": volume}


def run_incremental(bars: dict[str, np.ndarray], spec: FeatureSpec = SPEC) -> np.ndarray:
    inc = IncrementalFeatures(spec)
    rows = []
    for o, h, lo, c, v in zip(bars["open_"], bars["high"], bars["low"], bars["close"], bars["volume"]):
        row = inc.update(float(o), float(h), float(lo), float(c), float(v))
        rows.append(np.full(spec.n_features, np.nan) if row is None else row)
    return np.array(rows)


def test_vectorised_equals_incremental_on_random_walk() -> None:
    bars = make_bars(3000, seed=1, flat=(1000, 1250))
    batch = compute_features(**bars)
    live = run_incremental(bars)
    assert np.array_equal(np.isnan(batch), np.isnan(live))
    diff = np.nanmax(np.abs(batch - live))
    print(f"max |vectorised - incremental| = {diff:.2e}")
    assert diff <= 1e-9


def test_warm_up_rows_are_nan_then_complete() -> None:
    bars = make_bars(400)
    f = compute_features(**bars)
    assert SPEC.warmup_bars == 169 and SPEC.first_valid_index == 168
    assert np.isnan(f[:168]).all()
    assert np.isfinite(f[168:]).all()
    assert np.all(np.isfinite(f), axis=1).argmax() == 168  # the first complete row
    assert compute_features(**make_bars(100)).shape == (100, 6)  # too short: all NaN, right shape
    assert np.isnan(compute_features(**make_bars(100))).all()


def test_values_match_hand_computation() -> None:
    bars = make_bars(400, seed=2)
    f = compute_features(**bars)
    c, v = bars["close"].tolist(), bars["volume"].tolist()
    t = 300
    r = [math.log(c[i] / c[i - 1]) for i in range(1, t + 1)]  # r[i-1] = return of bar i
    vol24 = statistics.pstdev(r[t - 24 : t])
    vol168 = statistics.pstdev(r[t - 168 : t])
    expected = [
        math.log(c[t] / c[t - 1]),
        math.log(c[t] / c[t - 4]),
        math.log(c[t] / c[t - 24]),
        math.log(vol24 + 1e-12),
        math.log((vol24 + 1e-12) / (vol168 + 1e-12)),
        math.log((v[t] + 1e-8) / (statistics.fmean(v[t - 23 : t + 1]) + 1e-8)),
    ]
    assert SPEC.names == ("ret_1", "ret_4", "ret_24", "log_vol_24", "log_vol_ratio_24_168", "log_volume_rel_24")
    np.testing.assert_allclose(f[t], expected, rtol=1e-12, atol=1e-12)


def test_flat_prices_and_zero_volume_stay_finite() -> None:
    bars = make_bars(600, seed=3, flat=(200, 450))
    bars["volume"][420] = 0.0
    f = compute_features(**bars)
    assert f[420, 3] == math.log(1e-12)  # 24 zero returns: std exactly 0, so the floor
    assert np.isfinite(f[420]).all()
    assert f[420, 5] == pytest.approx(math.log(1e-8 / (np.mean(bars["volume"][397:421]) + 1e-8)))


@pytest.mark.parametrize("cut", [170, 500, 1999])
def test_changing_bars_after_t_leaves_rows_up_to_t_unchanged(cut: int) -> None:
    bars = make_bars(2000, seed=4)
    before = compute_features(**bars)
    rng = np.random.default_rng(9)
    changed = {k: v.copy() for k, v in bars.items()}
    tail = slice(cut + 1, None)
    factor = np.exp(0.05 * rng.standard_normal(2000 - cut - 1))
    for k in ("open_", "high", "low", "close"):
        changed[k][tail] *= factor
    changed["volume"][tail] *= 3.0
    after = compute_features(**changed)
    assert np.array_equal(before[: cut + 1], after[: cut + 1], equal_nan=True)
    if cut + 1 < 2000:
        assert not np.allclose(before[cut + 1 :], after[cut + 1 :])  # the change did reach later rows


@pytest.mark.parametrize(
    "field,index,value",
    [("close", 10, 0.0), ("close", 5, -1.0), ("volume", 7, -1.0), ("high", 3, np.nan), ("open_", 0, np.inf)],
)
def test_bad_bars_raise(field: str, index: int, value: float) -> None:
    bars = make_bars(50)
    bars[field][index] = value
    with pytest.raises(ValueError, match=field.rstrip("_")):
        compute_features(**bars)


def test_incremental_rejects_bad_bar_and_ragged_arrays_raise() -> None:
    inc = IncrementalFeatures()
    with pytest.raises(ValueError, match="close"):
        inc.update(1.0, 1.0, 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="volume"):
        inc.update(1.0, 1.0, 1.0, 1.0, -2.0)
    bars = make_bars(50)
    bars["volume"] = bars["volume"][:-1]
    with pytest.raises(ValueError, match="same length"):
        compute_features(**bars)


def test_incremental_update_is_fast() -> None:
    bars = make_bars(2500, seed=5)
    inc = IncrementalFeatures()
    args = list(zip(*(bars[k].tolist() for k in ("open_", "high", "low", "close", "volume"))))
    for a in args[:500]:
        inc.update(*a)
    times = []
    for a in args[500:]:
        t0 = time.perf_counter()
        inc.update(*a)
        times.append(time.perf_counter() - t0)
    median_us = 1e6 * float(np.median(times))
    print(f"IncrementalFeatures.update median {median_us:.1f} µs")
    assert median_us < 50.0


def test_standardizer_uses_training_rows_only() -> None:
    rng = np.random.default_rng(6)
    x = np.cumsum(rng.standard_normal((1000, 3)), axis=0)  # drifting: train and test stats differ
    train, test = x[:600], x[600:]
    st = Standardizer.fit(train)
    np.testing.assert_allclose(st.mean, train.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(st.std, train.std(axis=0), rtol=1e-12)
    assert not np.allclose(st.mean, x.mean(axis=0), atol=0.1)  # fitting on all rows would differ
    z_train = st.transform(train)
    np.testing.assert_allclose(z_train.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(z_train.std(axis=0), 1.0, atol=1e-9)
    np.testing.assert_array_equal(st.transform(test), np.clip((test - train.mean(0)) / train.std(0), -10, 10))


def test_standardizer_clips_round_trips_and_rejects_nan() -> None:
    x = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
    st = Standardizer.fit(x, names=("a", "b"))
    assert st.std[1] == 1.0  # constant column: std 1, not a division by zero
    assert st.transform(np.array([1e6, 5.0])).tolist() == [10.0, 4.0]
    assert st.transform(np.array([-1e6, 1.0])).tolist() == [-10.0, 0.0]
    back = Standardizer.from_dict(json.loads(json.dumps(st.to_dict())))
    np.testing.assert_array_equal(back.transform(x), st.transform(x))
    assert back.names == ("a", "b")
    with pytest.raises(ValueError, match="NaN"):
        Standardizer.fit(np.array([[1.0], [np.nan], [2.0]]))


def test_feature_spec_round_trip_and_validation() -> None:
    spec = FeatureSpec(return_windows_bars=(1, 2), vol_window_bars=10, vol_long_window_bars=50, volume_window_bars=5)
    assert FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.warmup_bars == 51 and spec.n_features == 5
    bars = make_bars(300, seed=7)
    np.testing.assert_allclose(compute_features(**bars, spec=spec), run_incremental(bars, spec), atol=1e-9)
    with pytest.raises(ValueError):
        FeatureSpec(vol_window_bars=1)
    with pytest.raises(ValueError):
        FeatureSpec(return_windows_bars=(0, 4))
