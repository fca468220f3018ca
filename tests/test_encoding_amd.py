"""AMD solver (paper 002, eqs. 6-7): exact backtracking rule, monotonicity, per-sample independence."""

import math

import pytest
import torch
from torch import nn

from flowlearn.solvers.amd import AMD, AMDStatus


pytestmark = pytest.mark.usefixtures("one_thread")


def _quadratic(B=6, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.rand(B, d, generator=g) * 3 + 0.2          # diagonal Hessians per sample
    a = torch.randn(B, d, generator=g)

    def loss(z, rows=None):
        AA, aa = (A, a) if rows is None else (A[rows], a[rows])
        return 0.5 * (AA * (z - aa) ** 2).sum(1)
    return A, a, loss


def test_converges_to_closed_form_minimiser():
    A, a, loss = _quadratic()
    res = AMD(max_steps=2000, flat_rtol=0.0, gtol=1e-10).minimize(loss, torch.zeros_like(a))
    assert torch.allclose(res.z, a, atol=1e-9)
    assert all(s in (AMDStatus.CONVERGED, AMDStatus.STALLED) for s in res.status)


def test_first_step_is_the_smallest_decreasing_backtrack():
    # l(z - d g) < l(z)  <=>  d < 2 g.g / g.A g  for a quadratic: the accepted step is beta^m s0
    A, a, loss = _quadratic(B=8)
    amd = AMD(beta=0.75, s0=1.0, max_steps=1, flat_rtol=0.0)
    res = amd.minimize(loss, torch.zeros_like(a))
    g = -A * a                                            # gradient at z = 0
    bound = 2 * (g * g).sum(1) / (A * g * g).sum(1)
    m = torch.ceil(torch.log(bound) / math.log(0.75)).clamp(min=0)
    m = torch.where(0.75 ** m >= bound, m + 1, m)         # strict inequality
    expected = 0.75 ** m
    assert torch.allclose(res.step_sizes[0], expected, rtol=1e-12)
    assert torch.equal(res.loss_evals, (m + 1).long())
    assert torch.allclose(res.z, -expected[:, None] * g)


def test_scale_grows_by_kappa_and_is_capped():
    # on l = eps/2 |z - a|^2 every trial step decreases the loss: delta_n = min(s0 * kappa^n, smax)
    a = torch.ones(1, 2) * 1e3
    res = AMD(kappa=1.1, s0=1.0, smax=2.0, max_steps=12, flat_rtol=0.0).minimize(
        lambda z: 1e-3 * 0.5 * ((z - a) ** 2).sum(1), torch.zeros(1, 2))
    expected = torch.tensor([min(1.1 ** n, 2.0) for n in range(12)])
    assert torch.allclose(res.step_sizes[:, 0], expected, rtol=1e-12)
    assert res.status == [AMDStatus.MAX_STEPS]


def test_never_increases_any_sample_loss_on_a_nonconvex_decoder():
    torch.manual_seed(3)
    dec = nn.Sequential(nn.Linear(3, 16), nn.ELU(), nn.Linear(16, 20), nn.Sigmoid())
    y = torch.rand(10, 20)
    def loss(z, rows):
        return nn.functional.binary_cross_entropy(dec(z), y[rows], reduction="none").mean(1)

    res = AMD(max_steps=60).minimize(loss, torch.randn(10, 3) * 2, indexed=True)
    h = res.loss_history
    for b in range(10):
        col = h[:, b][~torch.isnan(h[:, b])]
        assert bool((col[1:] <= col[:-1]).all())
    assert bool((res.loss <= h[0]).all())
    recomputed = loss(res.z, torch.arange(10))
    assert torch.allclose(recomputed, res.loss, rtol=1e-12)


def test_each_sample_alone_equals_batch():
    torch.manual_seed(1)
    dec = nn.Sequential(nn.Linear(2, 8), nn.ELU(), nn.Linear(8, 12), nn.Sigmoid())
    y = torch.rand(7, 12)
    y[3] = 1.0 - y[3] ** 8                                # a harder sample must not change the others
    def loss(z, rows):
        return ((dec(z) - y[rows]) ** 2).mean(1)

    amd = AMD(max_steps=80)
    batch = amd.minimize(loss, torch.zeros(7, 2), indexed=True)
    assert len(set(batch.steps.tolist())) > 1             # samples really stop at different times
    for b in range(7):
        alone = amd.minimize(lambda z, rows: loss(z, rows + b), torch.zeros(1, 2), indexed=True)
        assert torch.allclose(alone.z[0], batch.z[b], rtol=1e-10, atol=1e-12)
        assert alone.steps[0] == batch.steps[b]
        assert alone.loss_evals[0] == batch.loss_evals[b]
        assert alone.status[0] == batch.status[b]


def test_indexed_and_full_batch_calls_agree():
    _, a, loss = _quadratic()
    amd = AMD(max_steps=30)
    r1 = amd.minimize(lambda z: loss(z), torch.zeros_like(a))
    r2 = amd.minimize(lambda z, rows: loss(z, rows), torch.zeros_like(a), indexed=True)
    assert torch.allclose(r1.z, r2.z, rtol=1e-13)
    assert torch.equal(r1.steps, r2.steps)


def test_step_sizes_replay_and_states():
    A, a, loss = _quadratic()
    res = AMD(max_steps=25).minimize(loss, torch.zeros_like(a), record_states=True)
    z = torch.zeros_like(a)
    for n in range(res.step_sizes.shape[0]):
        z = z - res.step_sizes[n][:, None] * (A * (z - a))
        assert torch.allclose(z, res.states[n + 1], rtol=1e-13, atol=1e-15)
    assert torch.allclose(z, res.z)
    assert torch.allclose(res.time, res.step_sizes.sum(0))


def test_tau_is_reached_exactly():
    _, a, loss = _quadratic()
    res = AMD(tau=2.5, max_steps=500, flat_rtol=0.0).minimize(loss, torch.zeros_like(a) + 10)
    for b, s in enumerate(res.status):
        if s is AMDStatus.REACHED_TAU:
            assert abs(float(res.time[b]) - 2.5) < 1e-12
    assert AMDStatus.REACHED_TAU in res.status


def test_flat_early_stop():
    # with a loss floor of 1 the relative decrease over `patience` steps tends to 0
    A, a, loss = _quadratic()
    amd = AMD(max_steps=1000, patience=3, flat_rtol=1e-3)
    res = amd.minimize(lambda z: 1.0 + loss(z), torch.zeros_like(a))
    assert all(s is AMDStatus.FLAT for s in res.status)
    assert bool((res.steps >= 3).all()) and bool((res.steps < 1000).all())
    for b in range(a.shape[0]):   # the rule fired at the first step where it holds
        col = res.loss_history[:, b][~torch.isnan(res.loss_history[:, b])]
        n = int(res.steps[b])
        assert col[n - 3] - col[n] <= 1e-3 * col[n - 3]
        assert not (col[n - 4] - col[n - 1] <= 1e-3 * col[n - 4]) if n >= 4 else True


def test_stationary_start_and_nonfinite():
    res = AMD().minimize(lambda z: (z ** 2).sum(1), torch.zeros(3, 2))
    assert res.status == [AMDStatus.CONVERGED] * 3 and int(res.steps.sum()) == 0
    res = AMD().minimize(lambda z: torch.log(z[:, 0]), torch.tensor([[-1.0], [1.0]]))
    assert res.status[0] is AMDStatus.NONFINITE


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_preserved(dtype):
    a = torch.ones(2, 3, dtype=dtype)
    res = AMD(max_steps=5).minimize(lambda z: ((z - a) ** 2).sum(1), torch.zeros(2, 3, dtype=dtype))
    assert res.z.dtype == dtype and res.loss.dtype == dtype and res.time.dtype == dtype


@pytest.mark.parametrize("kwargs, match", [
    ({"beta": 1.5}, "beta"), ({"beta": 0}, "beta"), ({"s0": -1}, "s0"), ({"smax": 0.5}, "smax"),
    ({"kappa": 0.9}, "kappa"), ({"max_steps": 0}, "max_steps"), ({"tau": -1.0}, "tau"),
    ({"flat_rtol": -1e-3}, "flat_rtol"), ({"patience": 0}, "patience"),
])
def test_invalid_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AMD(**kwargs)


def test_invalid_inputs():
    with pytest.raises(TypeError, match="z0"):
        AMD().minimize(lambda z: z.sum(1), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="loss_fn must return shape"):
        AMD().minimize(lambda z: z.sum(), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="z0 must be finite"):
        AMD().minimize(lambda z: z.sum(1), torch.full((2, 2), math.nan))
