"""Float64 checks of the closed-form gradient (Theorem 3.8) against independent references."""

import pytest
import torch

from flowlearn.graphs import GridWeights
from flowlearn.learning import LearningProblem
from flowlearn.linearized import AutodiffEuler, AutodiffExpint, Exact, LowRank
from flowlearn.linearized.methods import method_from_name
from flowlearn.linearized.methods import METHODS
from flowlearn.linearized.closed_form import augmented_matrix, benzi_simoncini, bilinear_terms, frechet_block


def kronecker_sum(M1, M2):
    r""":math:`M_1\oplus M_2 = M_1\otimes I_{n_2} + I_{n_1}\otimes M_2` (row-stacking convention)."""
    n1, n2 = M1.shape[0], M2.shape[0]
    M1, M2 = M1.contiguous(), M2.contiguous()
    return torch.kron(M1, torch.eye(n2, dtype=M2.dtype)) + torch.kron(torch.eye(n1, dtype=M1.dtype), M2)


def phi_dense(M):
    r"""Dense :math:`\varphi(M) = \sum_{j\ge0} M^j/(j+1)!`: the upper-right block of
    :math:`\exp\begin{psmallmatrix}M & I\\0&0\end{psmallmatrix}` (Higham 2008, §10.7.4)."""
    n = M.shape[0]
    aug = torch.zeros(2 * n, 2 * n, dtype=M.dtype)
    aug[:n, :n] = M
    aug[:n, n:] = torch.eye(n, dtype=M.dtype)
    return torch.linalg.matrix_exp(aug)[:n, n:]


def frechet_kronecker(M1, M2, b1, b2):
    r"""Reference (3.36): :math:`G = \mathrm{vec}_r^{-1}\big[(I\otimes e^{M_2})\,\varphi(M_1\oplus(-M_2))\,
    (b_1\otimes b_2)\big]` ``(n1, n2)`` with the dense Kronecker sum (tiny problems only)."""
    n1, n2 = M1.shape[0], M2.shape[0]
    I1 = torch.eye(n1, dtype=M1.dtype)
    vec = torch.kron(I1, torch.linalg.matrix_exp(M2)) @ (phi_dense(kronecker_sum(M1, -M2)) @ torch.kron(b1, b2))
    return vec.reshape(n1, n2)


def make_problem(h, w, J=3, *, T=3.0, tau=0.0, rho=0.5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    D = (2.0 * torch.rand(h * w, J, generator=g, dtype=torch.float64)).to(dtype)
    labels = torch.randint(0, J, (h * w,), generator=g)
    patches = torch.rand(h * w, 9, generator=g, dtype=torch.float64) + 0.2
    patches = (patches / patches.sum(1, keepdim=True)).to(dtype)
    prob = LearningProblem.build(GridWeights(h, w, 3, dtype=dtype), D, labels, rho=rho, T=T, tau=tau)
    return prob, patches


def dense_loss(prob, patches):
    """Independent reference: L(p) through the dense augmented matrix and torch.linalg.matrix_exp."""
    system = prob.system(patches)
    I, J = system.S.shape
    aug = augmented_matrix(system.dense(), system.B.reshape(-1), prob.T)
    V = torch.linalg.matrix_exp(aug)[: I * J, I * J].reshape(I, J)
    return prob.data_loss(V) + prob.regularizer(patches)


def autograd_reference(prob, patches):
    p = patches.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(dense_loss(prob, p), p)
    return g


def rel(a, b):
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def cosine(a, b):
    return float((a * b).sum() / (torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b)))


@pytest.mark.parametrize("size,tau", [((6, 6), 0.0), ((5, 7), 0.01), ((12, 12), 0.0)])
def test_exact_equals_autograd_through_dense_matrix_exp(size, tau):
    prob, p = make_problem(*size, tau=tau)
    r = prob.evaluate(p, Exact())
    ref = autograd_reference(prob, p)
    assert rel(r.grad, ref) < 1e-8
    assert abs(r.loss - float(dense_loss(prob, p))) < 1e-10


def test_exact_agrees_with_finite_differences():
    prob, p = make_problem(6, 6, tau=0.02, seed=3)
    grad = prob.evaluate(p, Exact()).grad
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        d = torch.randn(p.shape, generator=g)
        d = d - d.mean(1, keepdim=True)  # stay on the simplex (rows keep summing to one)
        d = d / torch.linalg.vector_norm(d)
        eps = 1e-4
        fd = (float(dense_loss(prob, p + eps * d)) - float(dense_loss(prob, p - eps * d))) / (2 * eps)
        assert abs(fd - float((grad * d).sum())) < 1e-6 * max(1e-3, abs(fd))


def test_lowrank_full_krylov_and_full_rank_equals_exact():
    prob, p = make_problem(8, 8, J=3)
    k = 8 * 8 * 3
    exact = prob.evaluate(p, Exact())
    full = prob.evaluate(p, LowRank(m=k, rank=k))
    assert rel(full.grad, exact.grad) < 1e-8
    assert rel(full.tangent, exact.tangent) < 1e-10


def test_lowrank_default_cosine_to_exact_12x12():
    prob, p = make_problem(12, 12, J=3, T=5.0)
    exact = prob.evaluate(p, Exact())
    low = prob.evaluate(p, LowRank())
    assert (low.stats["krylov_dim"], low.stats["rank"]) == (10, 1)
    assert cosine(low.grad, exact.grad) >= 0.99
    s = torch.tensor(low.stats["singular_values"])
    assert s[1] < 0.1 * s[0]  # rapid decay: rank one suffices (Fig. 4b)


def test_lowrank_gets_better_with_rank_and_krylov_dimension():
    prob, p = make_problem(10, 10, J=3, T=5.0, seed=2)
    exact = prob.evaluate(p, Exact()).grad
    errs = [rel(prob.evaluate(p, LowRank(m=m, rank=r)).grad, exact) for m, r in [(4, 1), (10, 1), (20, 20)]]
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 1e-6


@pytest.mark.parametrize("m, rank", [(10, 1), (192, 192)])
def test_lowrank_recompute_forward_gives_the_same_gradient(m, rank):
    """Rebuilding the forward basis instead of keeping it changes nothing but the number of products
    (with a full Krylov space the memory-lean variant still equals ``exact``)."""
    prob, p = make_problem(8, 8, J=3, T=5.0, seed=3)
    keep = prob.evaluate(p, LowRank(m=m, rank=rank))
    lean = prob.evaluate(p, LowRank(m=m, rank=rank, recompute_forward=True))
    assert rel(lean.grad, keep.grad) < 1e-13 and lean.loss == keep.loss
    assert lean.stats["matvecs"] == keep.stats["matvecs"] + keep.stats["krylov_dim"]
    if m == 192:
        assert rel(lean.grad, prob.evaluate(p, Exact()).grad) < 1e-8
    with pytest.raises(TypeError, match="recompute_forward must be a bool, got 'yes'"):
        LowRank(recompute_forward="yes")


def test_autodiff_expint_matches_exact_and_euler_converges_first_order():
    prob, p = make_problem(6, 6, J=3, T=2.0)
    exact = prob.evaluate(p, Exact()).grad
    assert rel(prob.evaluate(p, AutodiffExpint(m=40)).grad, exact) < 1e-8
    e1 = rel(prob.evaluate(p, AutodiffEuler(step_size=0.04)).grad, exact)
    e2 = rel(prob.evaluate(p, AutodiffEuler(step_size=0.02)).grad, exact)
    assert 1.6 < e1 / e2 < 2.4  # explicit Euler: error O(h)


def test_kronecker_sum_row_stacking_convention():
    g = torch.Generator().manual_seed(0)
    M1, M2, Z = (torch.randn(n, n2, generator=g) for n, n2 in [(3, 3), (4, 4), (3, 4)])
    assert torch.allclose(kronecker_sum(M1, M2) @ Z.reshape(-1), (M1 @ Z + Z @ M2.T).reshape(-1))


def test_frechet_block_equals_phi_of_kronecker_sum_and_quadrature():
    g = torch.Generator().manual_seed(1)
    M1, M2 = 0.7 * torch.randn(5, 5, generator=g), 0.7 * torch.randn(6, 6, generator=g)
    b1, b2 = torch.randn(5, generator=g), torch.randn(6, generator=g)
    G = frechet_block(M1, M2, b1, b2)
    assert torch.allclose(G, frechet_kronecker(M1, M2, b1, b2), atol=1e-12)
    s = torch.linspace(0, 1, 2001)  # Simpson's rule of the defining integral
    vals = torch.stack([torch.linalg.matrix_exp(t * M1) @ torch.outer(b1, b2) @ torch.linalg.matrix_exp((1 - t) * M2.T)
                        for t in s])
    wts = torch.ones(2001)
    wts[1:-1:2], wts[2:-1:2] = 4, 2
    quad = (wts.view(-1, 1, 1) * vals).sum(0) / (3 * 2000)
    assert torch.allclose(G, quad, atol=1e-9)
    X = benzi_simoncini(M1, M2)
    assert torch.allclose(X, frechet_block(M1, M2, torch.eye(5)[0], torch.eye(6)[0]))
    assert torch.allclose(phi_dense(torch.zeros(2, 2)), torch.eye(2))


def test_frechet_of_augmented_matrix_is_gradient_of_expm_last_column():
    """<g, d v_T> = <G, dA>: G from the Kronecker form is the adjoint of the Frechet derivative of expm."""
    g = torch.Generator().manual_seed(2)
    A = 0.5 * torch.randn(5, 5, generator=g)
    b = torch.randn(5, generator=g)
    aug = augmented_matrix(A, b, 1.5).requires_grad_(True)
    w = torch.randn(5, generator=g)
    (ref,) = torch.autograd.grad((torch.linalg.matrix_exp(aug)[:5, 5] * w).sum(), aug)
    G = frechet_kronecker(aug.detach().T, aug.detach(), torch.cat([w, torch.zeros(1)]), torch.eye(6)[5])
    assert torch.allclose(G, ref, atol=1e-12)


def test_bilinear_terms_match_autograd():
    prob, p = make_problem(5, 6, J=4 if False else 3, seed=4)
    g = torch.Generator().manual_seed(5)
    X, Y = torch.randn(30, 3, generator=g), torch.randn(30, 3, generator=g)
    w = prob.weights.with_patches(p).weights.clone().requires_grad_(True)
    S = torch.softmax(-prob.weights.apply(prob.scaled_distances, weights=w), -1)
    Sd = S.detach().requires_grad_(True)
    Z = prob.weights.apply(Y, weights=w)
    val = (X * (Sd * (Z - (Sd * Z).sum(-1, keepdim=True)))).sum()
    gw, gs = torch.autograd.grad(val, (w, Sd))
    terms = bilinear_terms(prob.system(p), X, Y)
    assert torch.allclose(terms.direct, gw * prob.weights.mask, atol=1e-12)
    assert torch.allclose(terms.through_s, gs, atol=1e-12)


def test_float32_keeps_dtype_and_is_close():
    prob64, p64 = make_problem(8, 8)
    prob32, p32 = make_problem(8, 8, dtype=torch.float32)
    for name in ["lowrank", "autodiff-expint", "exact"]:
        r = prob32.evaluate(p32, method_from_name(name))
        assert r.grad.dtype == torch.float32 and r.tangent.dtype == torch.float32
        ref = prob64.evaluate(p64, method_from_name(name)).grad
        assert rel(r.grad.double(), ref) < 1e-3


def test_registry_and_errors():
    assert {m.name for m in METHODS} == {"exact", "lowrank", "dense-autograd", "autodiff-euler", "autodiff-expint"}
    with pytest.raises(ValueError, match="must be one of .*'lowrnk'"):
        method_from_name("lowrnk")
    with pytest.raises(ValueError, match="has no option.*'rnak'"):
        method_from_name("lowrank", rnak=2)
    with pytest.raises(ValueError, match="m must be >= 1"):
        method_from_name("lowrank", m=0)
    with pytest.raises(ValueError, match="step_size must be > 0|step_size"):
        method_from_name("autodiff-euler", step_size=-1.0)
    prob, p = make_problem(6, 6)
    with pytest.raises(ValueError, match=r"patches must have shape \(36, 9\)"):
        prob.evaluate(p[:, :4], LowRank())
    with pytest.raises(ValueError, match="strictly positive"):
        prob.evaluate(torch.zeros_like(p), LowRank())
    big, pb = make_problem(30, 30)
    with pytest.raises(ValueError, match="I\\*J must be <= 2500"):
        big.evaluate(pb, Exact())
