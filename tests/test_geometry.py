"""Property tests of the simplex geometry (float64)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flowlearn.geometry import (
    Simplex,
    barycenter,
    egrad2rgrad,
    entropy,
    expmap,
    lift,
    logmap,
    proj_tangent,
    replicator,
)
from flowlearn.geometry.simplex import inner, lift_inverse, replicator_, replicator_matrix


def _points(seed, shape):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(3 * torch.randn(*shape, generator=g), -1), torch.randn(*shape, generator=g)


seeds = st.integers(0, 10_000)
shapes = st.sampled_from([(5,), (4, 3), (2, 3, 7), (6, 2)])


@settings(max_examples=40, deadline=None)
@given(seeds, shapes)
def test_points_stay_on_simplex(seed, shape):
    p, v = _points(seed, shape)
    for q in (lift(p, v), expmap(p, proj_tangent(v) * p)):
        assert bool((q > 0).all())
        torch.testing.assert_close(q.sum(-1), torch.ones(q.shape[:-1]), rtol=0, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(seeds, shapes)
def test_lift_inverse_is_inverse_on_tangent_space(seed, shape):
    p, v = _points(seed, shape)
    v0 = proj_tangent(v)
    torch.testing.assert_close(lift_inverse(p, lift(p, v0)), v0, rtol=0, atol=1e-10)
    # and lift o lift_inverse = id on the simplex
    q, _ = _points(seed + 1, shape)
    torch.testing.assert_close(lift(p, lift_inverse(p, q)), q, rtol=0, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(seeds, shapes)
def test_replicator_properties(seed, shape):
    p, v = _points(seed, shape)
    torch.testing.assert_close(replicator(p, torch.ones_like(p)), torch.zeros_like(p), rtol=0, atol=1e-14)
    # maps into T0, symmetric, equals the dense matrix
    torch.testing.assert_close(replicator(p, v).sum(-1), torch.zeros(p.shape[:-1]), rtol=0, atol=1e-12)
    R = replicator_matrix(p)
    torch.testing.assert_close(R, R.transpose(-1, -2))
    torch.testing.assert_close((R @ v.unsqueeze(-1)).squeeze(-1), replicator(p, v))
    w = v.clone()
    assert replicator_(p, w) is w  # the in-place variant writes R_p v into its argument
    torch.testing.assert_close(w, replicator(p, v), rtol=0, atol=1e-15)


@pytest.mark.parametrize("J", [2, 3, 6])
def test_derivative_of_lift_is_replicator(J):
    g = torch.Generator().manual_seed(J)
    p = torch.softmax(torch.randn(J, generator=g), -1)
    v = torch.randn(J, generator=g)
    jac = torch.autograd.functional.jacobian(lambda x: lift(p, x), v)
    torch.testing.assert_close(jac, replicator_matrix(lift(p, v)), rtol=0, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(seeds, shapes)
def test_expmap_logmap_roundtrip(seed, shape):
    p, v = _points(seed, shape)
    v0 = replicator(p, v)  # a tangent vector of moderate size
    torch.testing.assert_close(logmap(p, expmap(p, v0)), v0, rtol=0, atol=1e-9)
    M = Simplex()
    torch.testing.assert_close(M.retr(p, v0), expmap(p, v0))


def test_expmap_at_barycenter_is_softmax_of_J_v():
    J = 5
    v = proj_tangent(torch.randn(3, J))
    torch.testing.assert_close(expmap(barycenter(3, J), v), torch.softmax(J * v, -1))


def test_riemannian_gradient_represents_differential():
    """<rgrad, u>_p = <egrad, u> for every tangent u, with rgrad = R_p egrad."""
    p, egrad = _points(3, (4, 6))
    u = proj_tangent(torch.randn(4, 6))
    torch.testing.assert_close(inner(p, egrad2rgrad(p, egrad), u), (egrad * u).sum(-1))


def test_entropy_values():
    J = 7
    torch.testing.assert_close(entropy(barycenter(J)), torch.tensor(float(torch.log(torch.tensor(J)))))
    assert float(entropy(torch.eye(J)[2])) == 0.0


def test_log_domain_stability_extreme_values():
    D = torch.tensor([[0.0, 1e4, 5e3], [1e4, 1e4, 0.0]])
    p = torch.full((2, 3), 1 / 3)
    q = lift(p, -D)
    assert bool(torch.isfinite(q).all()) and torch.allclose(q.sum(-1), torch.ones(2))
    tiny = torch.tensor([1e-300, 1.0 - 2e-300, 1e-300])
    for out in (lift(tiny, torch.tensor([1.0, 0.0, -1.0])), lift_inverse(tiny, barycenter(3)),
                logmap(tiny, barycenter(3)), entropy(tiny)):
        assert bool(torch.isfinite(out).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_preserved(dtype):
    p = barycenter(4, 3, dtype=dtype)
    v = torch.randn(4, 3, dtype=dtype)
    for out in (lift(p, v), lift_inverse(p, p), expmap(p, v), logmap(p, p), replicator(p, v), entropy(p)):
        assert out.dtype == dtype


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_device_preserved_cuda():
    p = barycenter(4, 3, device="cuda")
    assert lift(p, torch.randn(4, 3, device="cuda")).device.type == "cuda"


def test_barycenter_rejects_bad_shape():
    with pytest.raises(ValueError, match="number of labels"):
        barycenter()
