from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch

from models.network import NumpyScoreMLP, ScoreMLP


def make_model(dim: int = 6, hidden: int = 128, depth: int = 3, seed: int = 0) -> ScoreMLP:
    torch.manual_seed(seed)
    return ScoreMLP(dim, hidden, depth).eval()


def test_output_is_mlp_of_x_and_log_sigma_divided_by_sigma() -> None:
    model = make_model(dim=3, hidden=16, depth=2)
    x = torch.randn(5, 3)
    sigma = 0.37
    raw = model.net(torch.cat([x, torch.full((5, 1), np.log(sigma))], dim=1))
    torch.testing.assert_close(model(x, sigma), raw / sigma)
    per_row = torch.tensor([0.1, 0.5, 1.0, 2.0, 8.0])
    expected = torch.cat([model(x[i : i + 1], float(per_row[i])) for i in range(5)])
    torch.testing.assert_close(model(x, per_row), expected)
    assert len([m for m in model.net if isinstance(m, torch.nn.Linear)]) == 3  # depth 2 hidden + output


def test_args_rebuild_the_same_network() -> None:
    model = make_model(dim=4, hidden=32, depth=3)
    rebuilt = ScoreMLP(**model.args)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(7, 4)
    assert torch.equal(rebuilt(x, 0.5), model(x, 0.5))


@pytest.mark.parametrize("sigma", [0.02, 0.6, 20.0])
def test_numpy_fast_path_matches_torch(sigma: float) -> None:
    model = make_model()
    fast = NumpyScoreMLP.from_torch(model)
    x = np.random.default_rng(0).standard_normal((256, 6)) * 2.0
    got = fast.score(x, sigma)
    with torch.no_grad():
        ref64 = copy.deepcopy(model).double()(torch.as_tensor(x), sigma).numpy()
        ref32 = model(torch.as_tensor(x, dtype=torch.float32), sigma).double().numpy()
    scale = np.abs(ref64).max()
    err64 = np.abs(got - ref64).max() / scale
    err32 = np.abs(got - ref32).max() / scale
    print(f"σ={sigma}: numpy vs torch float64 {err64:.1e}, vs torch float32 {err32:.1e} (relative to max |s|)")
    assert err64 < 1e-12  # same maths, same precision
    assert err32 < 1e-6  # float32 rounding only
    np.testing.assert_allclose(fast.score(x[3], sigma), got[3], rtol=1e-12)  # a single (d,) row works


def test_per_bar_query_is_fast() -> None:
    fast = NumpyScoreMLP.from_torch(make_model())
    x = np.random.default_rng(1).standard_normal(6)
    for _ in range(200):
        fast.score(x, 0.6)
    times = []
    for _ in range(2000):
        t0 = time.perf_counter()
        fast.score(x, 0.6)
        times.append(time.perf_counter() - t0)
    median_us = 1e6 * float(np.median(times))
    print(f"numpy per-bar query (6-d, 128x3) median {median_us:.1f} µs")
    assert median_us < 200.0


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError):
        ScoreMLP(0)
    with pytest.raises(ValueError):
        NumpyScoreMLP.from_torch(make_model()).score(np.zeros(6), 0.0)
