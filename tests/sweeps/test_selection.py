"""DSR and PBO on constructed cases with known answers: pure noise, and one planted edge."""
from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import numpy as np
import pytest

from analysis.selection import (deflated_sharpe, expected_max_sharpe, probability_of_overfitting, sharpe)
from app.sweep.driver import aligned_returns

T, N = 2_000, 40


def noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.01, size=(T, N))


def trial_sharpes(m: np.ndarray) -> np.ndarray:
    return np.array([sharpe(m[:, j]) for j in range(m.shape[1])])


def test_expected_max_sharpe_matches_monte_carlo() -> None:
    """SR₀ is the expected maximum of N normal Sharpes: check against simulated maxima."""
    rng = np.random.default_rng(0)
    sd = 0.03
    maxima = rng.normal(0.0, sd, size=(20_000, 100)).max(axis=1)
    assert expected_max_sharpe(100, sd ** 2) == pytest.approx(maxima.mean(), rel=0.02)
    assert expected_max_sharpe(1, sd ** 2) == 0.0


def test_dsr_of_one_trial_is_the_probabilistic_sharpe_ratio() -> None:
    """With N = 1 nothing is deflated: DSR = Φ(ŜR √(T−1) / √(1 − γ₃ŜR + (γ₄−1)/4 ŜR²)), by hand."""
    r = np.random.default_rng(3).normal(0.001, 0.01, size=500)
    out = deflated_sharpe(r, np.array([sharpe(r)]))
    c = r - r.mean()
    skew = np.mean(c ** 3) / np.mean(c ** 2) ** 1.5
    kurt = np.mean(c ** 4) / np.mean(c ** 2) ** 2
    sr = r.mean() / r.std(ddof=1)
    expected = NormalDist().cdf(sr * math.sqrt(499) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr ** 2))
    assert out.sr0 == 0.0 and out.dsr == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_noise_only_strategies_look_overfit(seed: int) -> None:
    m = noise(seed)
    srs = trial_sharpes(m)
    best = int(np.argmax(srs))
    naive = deflated_sharpe(m[:, best], srs[best:best + 1]).dsr  # as if only the winner had been tried
    dsr = deflated_sharpe(m[:, best], srs)
    assert naive > 0.9  # the winner of 40 coin flips looks significant on its own ...
    assert dsr.dsr < 0.75  # ... but not once the 40 trials are accounted for
    assert dsr.n_trials == N and dsr.sr0 > 0
    pbo = probability_of_overfitting(m, n_splits=10)
    assert pbo.n_combinations == math.comb(10, 5)
    assert 0.3 <= pbo.pbo <= 0.7  # in-sample winners are no better than a coin out of sample


def test_a_planted_edge_survives() -> None:
    m = noise(4)
    m[:, 7] += 0.0012  # per-period Sharpe ≈ 0.12: t ≈ 5.4 over 2,000 periods
    srs = trial_sharpes(m)
    assert int(np.argmax(srs)) == 7
    dsr = deflated_sharpe(m[:, 7], srs)
    assert dsr.dsr > 0.95
    pbo = probability_of_overfitting(m, n_splits=10)
    assert pbo.pbo < 0.1


def test_pbo_matches_the_procedure_written_out_in_either_layout() -> None:
    """The vectorised CSCV against the papers' steps, one split at a time: join the in-sample
    blocks, take the best Sharpe there, rank that configuration out of sample (ties at mid-rank),
    λ = ln(ω / (1 − ω)). Given as T × N rows, or as the transposed view of N rows a sweep builds."""
    rng = np.random.default_rng(5)
    t, n, s = 203, 7, 6  # 203 = 6 × 33 + 5: the first 5 rows are dropped
    m = rng.normal(0.0, 0.01, size=(t, n))
    m[:, 2] += 0.002
    body = m[t % s:]
    blocks = np.split(body, s)
    expected = []
    for combo in itertools.combinations(range(s), s // 2):
        ins = np.vstack([blocks[i] for i in combo])
        oos = np.vstack([blocks[i] for i in range(s) if i not in combo])
        is_sr, oos_sr = ins.mean(0) / ins.std(0, ddof=1), oos.mean(0) / oos.std(0, ddof=1)
        best = oos_sr[int(np.argmax(is_sr))]
        omega = (np.sum(oos_sr < best) + 0.5 * (np.sum(oos_sr == best) - 1) + 1) / (n + 1)
        expected.append(math.log(omega / (1 - omega)))
    for layout in (m, np.ascontiguousarray(m.T).T):
        out = probability_of_overfitting(layout, n_splits=s)
        assert out.n_combinations == math.comb(s, s // 2) == len(expected)
        assert out.logits.tolist() == pytest.approx(expected, abs=1e-12)
        assert out.pbo == np.mean(np.array(expected) <= 0)


def test_pbo_refuses_what_it_cannot_measure() -> None:
    with pytest.raises(ValueError):
        probability_of_overfitting(np.zeros((100, 1)))
    with pytest.raises(ValueError):
        probability_of_overfitting(np.zeros((3, 5)))


def test_returns_are_aligned_on_the_bars_every_run_measured() -> None:
    ts = np.arange(10, dtype=np.int64) * 1000
    a = 100.0 + np.arange(10.0)
    b = 200.0 + 2 * np.arange(10.0)
    same = aligned_returns([(ts, a), (ts, b)])
    assert same is not None
    np.testing.assert_array_equal(same, np.column_stack([a[1:] / a[:-1] - 1, b[1:] / b[:-1] - 1]))
    # a run that started later and one that missed a bar: only the bars both have count
    late = aligned_returns([(ts, a), (np.delete(ts[2:], 3), np.delete(b[2:], 3))])
    keep = np.delete(np.arange(2, 10), 3)
    assert late is not None
    np.testing.assert_array_equal(late, np.column_stack([a[keep][1:] / a[keep][:-1] - 1,
                                                         b[keep][1:] / b[keep][:-1] - 1]))
    assert aligned_returns([(ts, a), (ts[8:], b[8:])]) is None  # fewer than 3 common bars


def _stored_curves(tmp_path, curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[object, list[dict]]:
    from domain.events import EngineEvents
    from store.db import init_db
    from store.repository import RunSpec, create_run, save_backtest

    db = init_db(str(tmp_path / "curves.db"))
    track = []
    for ts, eq in curves:
        run_id = create_run(db, RunSpec(mode="backtest", strategy="zscore", initial_cash=float(eq[0])))
        zeros = [0.0] * len(ts)
        save_backtest(db, run_id, EngineEvents(equity_ts_ms=list(map(int, ts)), equity_cash=list(eq),
                                               equity_position=zeros, equity_close=zeros, equity_quote=list(eq)),
                      {}, {}, None)
        track.append({"id": run_id})
    return db, track


def test_a_sweeps_runs_are_judged_one_curve_at_a_time_as_from_the_whole_matrix(tmp_path) -> None:
    """The summary streams each stored run's returns into its block moments; the result is the PBO and
    best-run returns of the T × N matrix built from all the curves at once. Curves over different
    bars are aligned first, with the same answer as aligning them by hand."""
    from analysis.selection import matrix_moments, overfit_from_moments
    from app.sweep.driver import _track_returns

    rng = np.random.default_rng(9)
    ts = np.arange(301, dtype=np.int64) * 3_600_000
    curves = [(ts, 100.0 * np.cumprod(1.0 + rng.normal(0.0, 0.01, len(ts)))) for _ in range(5)]
    db, track = _stored_curves(tmp_path, curves)
    best, moments = _track_returns(db, track, track[3]["id"])
    matrix = aligned_returns(curves)
    assert best.tobytes() == np.ascontiguousarray(matrix[:, 3]).tobytes()
    expected = matrix_moments(matrix)
    assert moments[2] == expected[2]
    assert np.array_equal(moments[0], expected[0]) and np.array_equal(moments[1], expected[1])
    assert overfit_from_moments(*moments).pbo == probability_of_overfitting(matrix).pbo

    late = [curves[0], (ts[5:], curves[1][1][5:]), curves[2]]  # one run started 5 bars later
    (tmp_path / "late").mkdir()
    db, track = _stored_curves(tmp_path / "late", late)
    best, moments = _track_returns(db, track, track[1]["id"])
    matrix = aligned_returns(late)
    assert len(best) == len(ts) - 6 and best.tobytes() == np.ascontiguousarray(matrix[:, 1]).tobytes()
    assert np.array_equal(moments[0], matrix_moments(matrix)[0])
