"""ODE solvers: a registry of problems with exact solutions; convergence orders; Krylov phi."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from flowlearn.graphs import GridWeights
from flowlearn.linearized import LinearizedSystem
from flowlearn.solvers import Euler, ExponentialIntegrator, FixedStepIntegrator, Heun, RK4, integrate, krylov_phi
from flowlearn.solvers.arnoldi import arnoldi
from flowlearn.solvers.base import Status, linear_grid, log_grid
from flowlearn.solvers.krylov import KrylovStatus

# ---------------------------------------------------------------- problems with exact solutions
_t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731  (built at import: dtype explicit)
PROBLEMS = {
    # name: (f(t, y), y0, t1, exact(t1))
    "decay": (lambda t, y: -2.0 * y, _t(1.0, -3.0), 1.5, lambda t: _t(1.0, -3.0) * math.exp(-2 * t)),
    "forced": (lambda t, y: -y + math.sin(t), _t(1.0), 2.0,
               lambda t: _t((math.sin(t) - math.cos(t)) / 2 + 1.5 * math.exp(-t))),
    "rotation": (lambda t, y: torch.stack([-y[1], y[0]]), _t(1.0, 0.0), math.pi / 2,
                 lambda t: _t(math.cos(t), math.sin(t))),
    "logistic": (lambda t, y: y * (1 - y), _t(0.1), 3.0,
                 lambda t: _t(1 / (1 + 9 * math.exp(-t)))),
}


@pytest.mark.parametrize("name", sorted(PROBLEMS))
@pytest.mark.parametrize("solver", [Euler(), Heun(), RK4()], ids=repr)
def test_convergence_order(name, solver):
    f, y0, t1, exact = PROBLEMS[name]
    errs = []
    for n in (40, 80, 160):
        sol = integrate(f, y0, linear_grid(t1, n), solver)
        assert sol.status is Status.SUCCESS and sol.stats["nfev"] == n * solver.stages
        errs.append(float((sol.y - exact(t1)).abs().max()))
    observed = math.log2(errs[1] / errs[2])
    assert abs(observed - solver.order) < 0.35, (errs, observed)


def test_integrate_terminate_save_and_errors():
    f, y0, t1, exact = PROBLEMS["decay"]
    sol = integrate(f, y0, linear_grid(10.0, 100), Euler(), terminate=lambda t, y: float(y.abs().max()) < 0.1,
                    save=True)
    assert sol.status is Status.TERMINATED and sol.t < 10.0
    assert sol.ys.shape == (sol.stats["steps"] + 1, 2) and torch.equal(sol.ys[-1], sol.y)
    sol = integrate(f, y0, linear_grid(0.1, 2), Euler(), terminate=lambda t, y: False)
    assert sol.status is Status.MAX_STEPS
    sol = integrate(lambda t, y: y * y, torch.tensor([10.0]), linear_grid(5.0, 10), Euler())
    assert sol.status is Status.NONFINITE
    with pytest.raises(ValueError, match="strictly increasing"):
        integrate(f, y0, torch.tensor([0.0, 1.0, 0.5]), Euler())
    with pytest.raises(TypeError, match="solver must be"):
        integrate(f, y0, linear_grid(1.0, 2), "euler")
    with pytest.raises(ValueError, match="y0 must be finite"):
        integrate(f, torch.tensor([float("nan")]), linear_grid(1.0, 2), Euler())
    g = log_grid(10.0, 5)
    assert g[0] == 0 and math.isclose(float(g[-1]), 10.0) and bool((g[1:] > g[:-1]).all())


# ---------------------------------------------------------------- Krylov phi
def _problem(H=32, W=32, J=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    D = 3 * torch.rand(H * W, J, generator=g)
    p = torch.rand(H * W, 9, generator=g) + 0.1
    om = GridWeights(H, W, 3, patches=p / p.sum(1, keepdim=True))
    return LinearizedSystem.at(om, D)


def _sparse_AJ(sysm):
    """Independent sparse assembly of A^J = Diag(R_S)(Omega kron I_J) with SciPy."""
    S = sysm.S.numpy()
    I, J = S.shape
    R = sp.block_diag([np.diag(s) - np.outer(s, s) for s in S], format="csr")
    return (R @ sp.kron(sysm.weights.to_scipy(), sp.identity(J), format="csr")).tocsr()


def _scipy_reference(sysm, T):
    AJ = _sparse_AJ(sysm)
    k = AJ.shape[0]
    b = sysm.B.numpy().reshape(-1)
    aug = sp.bmat([[T * AJ, sp.csr_array(T * b[:, None])], [None, sp.csr_array((1, 1))]], format="csr")
    e = np.zeros(k + 1)
    e[-1] = 1.0
    return torch.tensor(spla.expm_multiply(aug, e)[:k])


def _norm(sysm):
    return float(spla.svds(_sparse_AJ(sysm), k=1, return_singular_vectors=False)[0])  # spectral norm


@pytest.mark.parametrize("T", [1.0, 5.0, 18.0])
def test_krylov_phi_matches_scipy_m10(T):
    sysm = _problem()
    assert T * _norm(sysm) <= 5.0 + 1e-9  # the regime where one Krylov step of m = 10 must suffice
    ref = _scipy_reference(sysm, T)
    # one Krylov step while T||A|| is moderate; beyond, the error control sub-steps
    r = krylov_phi(sysm.matvec, sysm.B, T, m=10, substeps=1 if T * _norm(sysm) <= 1.5 else None)
    rel = float((r.y.reshape(-1) - ref).norm() / ref.norm())
    assert rel <= 1e-8, rel


@pytest.mark.parametrize("T", [50.0])
def test_krylov_phi_substepping_large_T(T):
    sysm = _problem()
    ref = _scipy_reference(sysm, T)
    r = krylov_phi(sysm.matvec, sysm.B, T, m=10, rtol=1e-9)
    rel = float((r.y.reshape(-1) - ref).norm() / ref.norm())
    assert rel <= 1e-6 and r.status is KrylovStatus.SUCCESS and r.stats["substeps"] > 1
    # the a-posteriori estimate is of the right order (not wildly optimistic)
    assert r.error_estimate / float(ref.norm()) > rel / 1e3


def test_krylov_phi_matches_dense_matrix_exp():
    sysm = _problem(12, 12, 5, seed=1)
    A = sysm.dense()
    b = sysm.B.reshape(-1)
    k = A.shape[0]
    for T in (2.0, 15.0):
        aug = torch.zeros(k + 1, k + 1)
        aug[:k, :k] = T * A
        aug[:k, k] = T * b
        ref = torch.linalg.matrix_exp(aug)[:k, k]
        r = krylov_phi(sysm.matvec, sysm.B, T, m=10)
        assert float((r.y.reshape(-1) - ref).norm() / ref.norm()) <= 1e-8


@pytest.mark.slow
def test_krylov_phi_matches_dense_matrix_exp_32x32x5():
    sysm = _problem()
    A, b = sysm.dense(), sysm.B.reshape(-1)
    k = A.shape[0]
    aug = torch.zeros(k + 1, k + 1)
    aug[:k, :k] = 5.0 * A
    aug[:k, k] = 5.0 * b
    ref = torch.linalg.matrix_exp(aug)[:k, k]
    r = krylov_phi(sysm.matvec, sysm.B, 5.0, m=10, substeps=1)
    assert float((r.y.reshape(-1) - ref).norm() / ref.norm()) <= 1e-8


def test_krylov_with_initial_value_and_dense_small():
    g = torch.Generator().manual_seed(5)
    n = 30
    A = torch.randn(n, n, generator=g) / 4
    b, y0 = torch.randn(n, generator=g), torch.randn(n, generator=g)
    t = 3.0
    eA = torch.linalg.matrix_exp(t * A)
    exact = eA @ y0 + torch.linalg.solve(A, (eA - torch.eye(n)) @ b)
    r = krylov_phi(lambda x: A @ x, b, t, y0=y0, m=12, rtol=1e-12)
    torch.testing.assert_close(r.y, exact, rtol=1e-9, atol=1e-9)


def test_happy_breakdown_and_zero_rhs_are_exact():
    A = torch.diag(torch.tensor([-1.0, -2.0, -3.0, 0.5]))
    b = torch.tensor([1.0, 1.0, 0.0, 0.0])  # lies in a 2-dim invariant subspace
    r = krylov_phi(lambda x: A @ x, b, 2.0, m=10)
    exact = torch.tensor([(math.exp(-2) - 1) / -1, (math.exp(-4) - 1) / -2, 0.0, 0.0])
    torch.testing.assert_close(r.y, exact, rtol=1e-14, atol=1e-14)
    assert r.status is KrylovStatus.BREAKDOWN and r.stats["krylov_dim"] == 2
    z = krylov_phi(lambda x: A @ x, torch.zeros(4), 2.0)
    assert torch.equal(z.y, torch.zeros(4))


def test_arnoldi_orthonormal_and_hessenberg_relation():
    sysm = _problem(10, 10, 4)
    ar = arnoldi(sysm.matvec, sysm.B, 8)
    Q = torch.stack([q.reshape(-1) for q in ar.basis], 1)
    torch.testing.assert_close(Q.T @ Q, torch.eye(ar.dim), atol=1e-12, rtol=0)
    AQ = torch.stack([sysm.matvec(q).reshape(-1) for q in ar.basis], 1)
    torch.testing.assert_close(Q.T @ AQ, ar.hessenberg, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="non-zero start vector"):
        arnoldi(sysm.matvec, torch.zeros_like(sysm.B), 4)


def test_krylov_is_differentiable():
    """Autograd through Arnoldi + expm equals autograd through the dense reference."""
    g = torch.Generator().manual_seed(2)
    n = 12
    A0 = torch.randn(n, n, generator=g) / 3
    b = torch.randn(n, generator=g)
    c = torch.randn(n, generator=g)

    def dense(A):
        aug = torch.zeros(n + 1, n + 1)
        aug[:n, :n] = 2.0 * A
        aug[:n, n] = 2.0 * b
        return torch.linalg.matrix_exp(aug)[:n, n] @ c

    A1 = A0.clone().requires_grad_(True)
    (krylov_phi(lambda x: A1 @ x, b, 2.0, m=n, substeps=2).y @ c).backward()
    A2 = A0.clone().requires_grad_(True)
    dense(A2).backward()
    torch.testing.assert_close(A1.grad, A2.grad, rtol=1e-8, atol=1e-10)


def test_linear_ode_strategies_agree():
    sysm = _problem(8, 8, 3)
    ex = ExponentialIntegrator(m=10).solve(sysm.matvec, sysm.B, 4.0)
    eu = [FixedStepIntegrator(Euler(), h).solve(sysm.matvec, sysm.B, 4.0).y for h in (0.02, 0.01)]
    e1, e2 = float((eu[0] - ex.y).norm()), float((eu[1] - ex.y).norm())
    assert e2 < e1 and abs(math.log2(e1 / e2) - 1) < 0.2  # Euler converges to it at order 1
    rk = FixedStepIntegrator(RK4(), 0.1).solve(sysm.matvec, sysm.B, 4.0)
    torch.testing.assert_close(rk.y, ex.y, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kwargs,match", [(dict(t=0.0), "t must be finite and > 0"), (dict(m=0), "m must be >= 1"),
                                          (dict(substeps=0), "substeps must be >= 1")])
def test_krylov_errors(kwargs, match):
    args = dict(t=1.0)
    args.update(kwargs)
    t = args.pop("t")
    with pytest.raises(ValueError, match=match):
        krylov_phi(lambda x: x, torch.ones(3), t, **args)
    with pytest.raises(ValueError, match="b must be finite"):
        krylov_phi(lambda x: x, torch.tensor([1.0, float("inf")]), 1.0)
