"""The two paths of flowlearn.solvers.arnoldi (preallocated block / autograd list) agree; the rule that picks one."""


import pytest
import torch

from flowlearn.graphs import GridWeights
from flowlearn.linearized import LinearizedSystem
from flowlearn.solvers import krylov_phi
from flowlearn.solvers.arnoldi import arnoldi
from flowlearn.solvers.arnoldi import ORTHOGONALITY_BUDGET


def _system(H=12, W=10, J=4, seed=0, patches=None):
    g = torch.Generator().manual_seed(seed)
    D = 3 * torch.rand(H * W, J, generator=g)
    if patches is None:
        p = torch.rand(H * W, 9, generator=g) + 0.1
        patches = p / p.sum(1, keepdim=True)
    return LinearizedSystem.at(GridWeights(H, W, 3, patches=patches), D)


def _block_and_autograd(matvec, v, m):
    with torch.no_grad():
        block = arnoldi(matvec, v, m)
    auto = arnoldi(matvec, v.clone().requires_grad_(True), m)
    return block, auto


def _matrix(ar):
    return torch.stack([q.detach().reshape(-1) for q in ar.basis])


def test_paths_give_same_basis_span_and_hessenberg_on_linearized_system():
    sysm = _system()
    block, auto = _block_and_autograd(sysm.matvec, sysm.B, 10)
    assert block.stats["path"] == "block" and auto.stats["path"] == "autograd"
    assert block.dim == auto.dim == 10 and not block.breakdown and not auto.breakdown
    Qb, Qa = _matrix(block), _matrix(auto)
    eye = torch.eye(10)
    torch.testing.assert_close(Qb @ Qb.T, eye, rtol=0, atol=1e-12)
    torch.testing.assert_close(Qa @ Qa.T, eye, rtol=0, atol=1e-12)
    # same span: each basis lies in the other's span, and the projectors agree
    torch.testing.assert_close(Qa - (Qa @ Qb.T) @ Qb, torch.zeros_like(Qa), rtol=0, atol=1e-12)
    torch.testing.assert_close(Qb.T @ Qb, Qa.T @ Qa, rtol=0, atol=1e-12)
    torch.testing.assert_close(block.hessenberg, auto.hessenberg.detach(), rtol=0, atol=1e-12)
    # Arnoldi relation A Q_m = Q_m H_m + h_{m+1,m} q_{m+1} e_m^T on the block path
    AQ = torch.stack([sysm.matvec(q).reshape(-1) for q in block.basis])
    rel = block.hessenberg.T @ Qb
    rel[-1] += block.h_next * block.q_next.reshape(-1)
    torch.testing.assert_close(AQ, rel, rtol=0, atol=1e-12)
    assert block.h_next == pytest.approx(auto.h_next, abs=1e-12)
    torch.testing.assert_close(block.q_next, auto.q_next.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(block.beta, auto.beta.detach(), rtol=1e-15, atol=0)
    c = torch.randn(10)
    torch.testing.assert_close(block.combine(c), auto.combine(c).detach(), rtol=0, atol=1e-12)
    assert block.combine(c).shape == sysm.B.shape and block.basis[0].shape == sysm.B.shape


def test_orthonormal_to_1e12_where_a_loose_reorthogonalisation_threshold_is_not():
    """Geometric spectrum 1..1e12, m = 60: with eta = 0.1 (never re-orthogonalising) classical Gram--Schmidt
    loses orthogonality step by step (about 1e-12 here); the running bound keeps both paths below it."""
    eps = torch.finfo(torch.float64).eps
    g = torch.Generator().manual_seed(0)
    n, m = 400, 60
    Qr, _ = torch.linalg.qr(torch.randn(n, n, generator=g))
    A = Qr @ torch.diag(torch.logspace(0, 12, n)) @ Qr.T
    v = torch.randn(n, generator=g)
    block, auto = _block_and_autograd(lambda x: A @ x, v, m)
    for ar in (block, auto):
        Q = _matrix(ar)
        torch.testing.assert_close(Q @ Q.T, torch.eye(m), rtol=0, atol=1e-12)
        assert ar.stats["reorthogonalizations"] > 0
        assert ar.stats["orthogonality_bound"] <= ORTHOGONALITY_BUDGET * eps
    rel = (block.hessenberg - auto.hessenberg.detach()).abs().max() / block.hessenberg.abs().max()
    assert float(rel) < 1e-12


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_running_bound_saves_second_passes_and_holds_on_assignment_flow_spaces(dtype):
    """On a linearized assignment flow (norm drop about 1/2 per step) the bound asks for a second pass on
    only a few steps, the basis is still orthonormal to the budget, and the measured loss stays below the
    bound; the Hessenberg matrix equals the one with a second pass on every step."""
    sysm = _system(24, 20, 5)
    v = sysm.B.to(dtype)
    S = sysm.S.to(dtype)
    omega = sysm.weights.to(dtype=dtype)

    def matvec(x):
        y = omega.apply(x)
        return S * (y - (S * y).sum(-1, keepdim=True))

    eps = torch.finfo(dtype).eps
    with torch.no_grad():
        ar = arnoldi(matvec, v, 20)
    Q = _matrix(ar).double()
    loss = float((Q @ Q.T - torch.eye(ar.dim, dtype=torch.float64)).abs().max())
    assert ar.stats["reorthogonalizations"] < ar.dim // 2
    assert loss <= ar.stats["orthogonality_bound"] <= ORTHOGONALITY_BUDGET * eps
    # reference: modified Gram--Schmidt with a full second pass on every step, in float64
    ref = [v.double() / torch.linalg.vector_norm(v.double())]
    Href = torch.zeros(ar.dim + 1, ar.dim, dtype=torch.float64)
    for j in range(ar.dim):
        w = matvec(ref[j].to(dtype)).double()
        for _ in range(2):
            for i, q in enumerate(ref):
                c = (q * w).sum()
                w = w - c * q
                Href[i, j] += c
        Href[j + 1, j] = torch.linalg.vector_norm(w)
        ref.append(w / Href[j + 1, j])
    tol = 1e-12 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(ar.hessenberg.double(), Href[: ar.dim, : ar.dim], rtol=0,
                               atol=tol * float(Href.abs().max()))


def test_path_rule():
    sysm = _system(6, 5, 3)
    assert arnoldi(sysm.matvec, sysm.B, 4).stats["path"] == "block"  # grad mode on, nothing requires grad
    with torch.no_grad():
        assert arnoldi(sysm.matvec, sysm.B.requires_grad_(True), 4).stats["path"] == "block"
    assert arnoldi(sysm.matvec, sysm.B, 4).stats["path"] == "autograd"  # the start vector requires grad
    p = sysm.weights.patches.clone().requires_grad_(True)
    sys_p = LinearizedSystem(weights=sysm.weights.with_patches(p), S=sysm.S, B=sysm.B.detach())
    assert arnoldi(sys_p.matvec, sys_p.B, 4).stats["path"] == "autograd"  # A depends on parameters


def test_grad_path_differentiable_matches_finite_differences():
    """d/dp <C, V_T(p)> by autograd through Arnoldi + expm equals a central difference (float64)."""
    H, W, J, T = 5, 4, 3, 2.0
    g = torch.Generator().manual_seed(3)
    D = 3 * torch.rand(H * W, J, generator=g)
    C = torch.randn(H * W, J, generator=g)
    p0 = torch.rand(H * W, 9, generator=g) + 0.2
    p0 = p0 / p0.sum(1, keepdim=True)
    direction = torch.randn(H * W, 9, generator=g)
    direction = direction - direction.mean(1, keepdim=True)  # stays on the simplex' tangent space
    base = GridWeights(H, W, 3)

    def f(p):
        sysm = LinearizedSystem.at(base.with_patches(p), D)
        return (krylov_phi(sysm.matvec, sysm.B, T, m=8, substeps=2).y * C).sum()

    p = p0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(p), p)
    eps = 1e-6
    with torch.no_grad():
        fd = (f(p0 + eps * direction) - f(p0 - eps * direction)) / (2 * eps)
    assert float((grad * direction).sum()) == pytest.approx(float(fd), rel=1e-7, abs=1e-10)


def test_krylov_phi_same_result_on_both_paths():
    sysm = _system(16, 16, 5)
    with torch.no_grad():
        fast = krylov_phi(sysm.matvec, sysm.B, 5.0, m=10, rtol=1e-10)
    slow = krylov_phi(sysm.matvec, sysm.B.clone().requires_grad_(True), 5.0, m=10, rtol=1e-10)
    assert fast.stats == slow.stats
    torch.testing.assert_close(fast.y, slow.y.detach(), rtol=1e-12, atol=1e-13)


def test_block_path_breakdown_dtype_and_errors():
    A = torch.diag(torch.tensor([-1.0, -2.0, -3.0, 0.5]))
    b = torch.tensor([1.0, 1.0, 0.0, 0.0])  # a 2-dimensional invariant subspace
    with torch.no_grad():
        ar = arnoldi(lambda x: A @ x, b, 6)
    assert ar.breakdown and ar.dim == 2 and ar.h_next == 0.0 and ar.q_next is None
    assert ar.stats["path"] == "block"
    Q = _matrix(ar)
    torch.testing.assert_close(Q @ A @ Q.T, ar.hessenberg, rtol=0, atol=1e-14)  # a few units of roundoff
    om32 = _system(6, 6, 3).weights.to(dtype=torch.float32)
    s32 = LinearizedSystem.at(om32, torch.rand(36, 3, dtype=torch.float32))
    with torch.no_grad():
        a32 = arnoldi(s32.matvec, s32.B, 5)
    assert a32.hessenberg.dtype == torch.float32 and a32.basis[0].dtype == torch.float32
    Q = _matrix(a32)
    torch.testing.assert_close(Q @ Q.T, torch.eye(a32.dim, dtype=torch.float32), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="non-zero start vector"):
        arnoldi(lambda x: x, torch.zeros(3), 2)
    w = torch.ones(3, requires_grad=True)
    calls = []

    def sneaky(x):  # starts requiring grad only after its first product
        calls.append(1)
        return x * w if len(calls) > 1 else x.flip(0)

    with pytest.raises(ValueError, match="requires grad at step 2"):
        arnoldi(sneaky, torch.tensor([1.0, 2.0, 3.0]), 3)
