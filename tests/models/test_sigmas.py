from __future__ import annotations

import numpy as np
import pytest

from models.sigmas import geometric_sigmas, sigma_max_from_data


def test_geometric_ladder_endpoints_and_constant_ratio() -> None:
    s = geometric_sigmas(20.0, 0.02, 15)
    assert s.shape == (15,)
    assert s[0] == pytest.approx(20.0, rel=1e-12) and s[-1] == pytest.approx(0.02, rel=1e-12)
    ratios = s[1:] / s[:-1]
    np.testing.assert_allclose(ratios, (0.02 / 20.0) ** (1 / 14), rtol=1e-12)
    assert np.all(np.diff(s) < 0)


@pytest.mark.parametrize("args", [(1.0, 2.0, 5), (1.0, 0.0, 5), (1.0, 0.1, 1), (np.nan, 0.1, 5)])
def test_geometric_ladder_rejects_bad_arguments(args: tuple[float, float, int]) -> None:
    with pytest.raises(ValueError):
        geometric_sigmas(*args)


def test_sigma_max_is_the_largest_pairwise_distance() -> None:
    rng = np.random.default_rng(0)
    x = 3.0 * rng.standard_normal((300, 4))
    brute = max(float(np.linalg.norm(a - b)) for a in x for b in x)
    assert sigma_max_from_data(x) == pytest.approx(brute, rel=1e-9)
    assert sigma_max_from_data(5.0 * x) == pytest.approx(5.0 * brute, rel=1e-9)  # scales with the data, not 1.0


def test_sigma_max_subsample_is_seeded_and_not_above_the_full_maximum() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3000, 6))
    full = sigma_max_from_data(x, max_points=3000)
    sub = sigma_max_from_data(x, max_points=1500, seed=3)
    assert sub == sigma_max_from_data(x, max_points=1500, seed=3)
    assert 0.8 * full < sub <= full + 1e-9
    with pytest.raises(ValueError):
        sigma_max_from_data(np.ones((10, 2)))
    with pytest.raises(ValueError):
        sigma_max_from_data(np.array([[0.0, np.nan], [1.0, 1.0]]))
