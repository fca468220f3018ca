"""The linearized flow function (closed-form backward) against autograd through dense matrix_exp (float64)."""

import pytest
import torch

from flowlearn._checks import UserInputError, UserTypeError
from flowlearn.graphs import GridWeights
from flowlearn.learning import LearningProblem
from flowlearn.learning.losses import assignment_kl
from flowlearn.linearized import DenseAutograd, Exact, LowRank, linearized_flow
from flowlearn.linearized.function import LinearizedFlowFunction, tangent_to_assignment


def make_inputs(h, w, J=3, *, size=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    N = size * size
    D = 2.0 * torch.rand(h * w, J, generator=g, dtype=torch.float64)
    p = torch.rand(h * w, N, generator=g, dtype=torch.float64) + 0.2
    p = p / p.sum(1, keepdim=True)
    G = torch.randn(h * w, J, generator=g, dtype=torch.float64)          # random grad_output
    return GridWeights(h, w, size, dtype=dtype), p.to(dtype), D.to(dtype), G.to(dtype)


def layer_grads(method, weights, p, D, G, *, rho=0.5, T=3.0, log_assignment=None):
    p = p.clone().requires_grad_(True)
    D = D.clone().requires_grad_(True)
    stats: dict = {}
    V = linearized_flow(p, D, weights, rho=rho, T=T, method=method, log_assignment=log_assignment, stats=stats)
    V.backward(G)
    return V.detach(), p.grad, D.grad, stats


def rel(a, b):
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def cosine(a, b):
    return float((a * b).sum() / (torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b)))


@pytest.mark.parametrize("size,stencil,T", [((6, 6), 3, 3.0), ((5, 7), 5, 2.0), ((12, 12), 3, 5.0)])
def test_exact_and_full_lowrank_equal_autograd_through_dense_matrix_exp(size, stencil, T):
    op, p, D, G = make_inputs(*size, size=stencil)
    V0, gp0, gd0, _ = layer_grads(DenseAutograd(), op, p, D, G, T=T)
    V1, gp1, gd1, _ = layer_grads(Exact(), op, p, D, G, T=T)
    assert rel(V1, V0) < 1e-12 and rel(gp1, gp0) < 1e-8 and rel(gd1, gd0) < 1e-8
    k = size[0] * size[1] * 3
    for method in (LowRank(m=k, rank=k), LowRank(m=k, rank=k, recompute_forward=True)):
        V2, gp2, gd2, stats = layer_grads(method, op, p, D, G, T=T)
        assert stats["forward_breakdown"]                      # the whole Krylov space was used
        assert rel(V2, V0) < 1e-10 and rel(gp2, gp0) < 1e-8 and rel(gd2, gd0) < 1e-8


def test_linearization_point_gradient_reaches_log_assignment():
    op, p, D, G = make_inputs(6, 6, seed=4)
    logw = torch.log_softmax(torch.randn(36, 3, generator=torch.Generator().manual_seed(2)), -1)
    grads = []
    for method in (DenseAutograd(), Exact(), LowRank(m=108, rank=108)):
        lw = logw.clone().requires_grad_(True)
        pp, DD = p.clone().requires_grad_(True), D.clone().requires_grad_(True)
        V = linearized_flow(pp, DD, op, rho=0.3, T=2.0, method=method, log_assignment=lw)
        V.backward(G)
        grads.append((pp.grad, DD.grad, lw.grad))
    for other in grads[1:]:
        for a, b in zip(other, grads[0]):
            assert rel(a, b) < 1e-8


def test_default_lowrank_cosine_at_least_0999_12x12():
    op, p, D, G = make_inputs(12, 12, seed=1)
    _, gp0, gd0, _ = layer_grads(Exact(), op, p, D, G, T=5.0)
    for method in (LowRank(), LowRank(recompute_forward=True)):
        _, gp, gd, stats = layer_grads(method, op, p, D, G, T=5.0)
        assert stats["krylov_dim"] == 10 and stats["rank"] == 1
        assert cosine(gp, gp0) >= 0.999 and cosine(gd, gd0) >= 0.999
        assert rel(gp, gp0) < 0.05 and rel(gd, gd0) < 0.05


def test_recompute_forward_is_bit_identical():
    op, p, D, G = make_inputs(8, 8, seed=2)
    a = layer_grads(LowRank(), op, p, D, G)
    b = layer_grads(LowRank(recompute_forward=True), op, p, D, G)
    for x, y in zip(a[:3], b[:3]):
        assert torch.equal(x, y)


@pytest.mark.parametrize("method", [Exact(), LowRank(m=40, rank=40)])
def test_gradcheck(method):
    op, p, D, _ = make_inputs(3, 4, seed=3)
    fn = lambda pp, DD: linearized_flow(pp, DD, op, rho=0.5, T=2.0, method=method)
    assert torch.autograd.gradcheck(fn, (p.clone().requires_grad_(True), D.clone().requires_grad_(True)),
                                    eps=1e-6, atol=1e-7, rtol=1e-5)


def test_uniform_similarities_zero_rhs_still_have_a_data_gradient():
    op, p, _, G = make_inputs(5, 5, seed=5)
    D = torch.linspace(0.0, 1.0, 25).unsqueeze(1).expand(25, 3).clone()   # equal across labels: B = 0
    _, gp0, gd0, _ = layer_grads(DenseAutograd(), op, p, D, G)
    for method in (Exact(), LowRank()):
        V, gp, gd, _ = layer_grads(method, op, p, D, G)
        assert float(V.abs().max()) == 0.0
        assert float(gp.abs().max()) < 1e-12 and float(gp0.abs().max()) < 1e-12
        assert float(torch.linalg.vector_norm(gd0)) > 1e-3 and rel(gd, gd0) < 1e-8


def test_zero_grad_output_and_consistency_with_lowrank_gradient_method():
    op, p, D, _ = make_inputs(6, 6, seed=6)
    _, gp, gd, _ = layer_grads(LowRank(), op, p, D, torch.zeros(36, 3))
    assert float(gp.abs().max()) == 0.0 and float(gd.abs().max()) == 0.0
    labels = torch.randint(0, 3, (36,), generator=torch.Generator().manual_seed(0))
    prob = LearningProblem.build(op, D, labels, rho=0.5, T=3.0)
    ref = prob.evaluate(p, LowRank())
    pp = p.clone().requires_grad_(True)
    V = linearized_flow(pp, D, op, rho=0.5, T=3.0)
    assignment_kl(V, labels).backward()
    assert rel(V.detach(), ref.tangent) < 1e-14 and rel(pp.grad, ref.grad) < 1e-12


def test_assignment_helper():
    op, p, D, _ = make_inputs(4, 4)
    V = linearized_flow(p, D, op, rho=0.5, T=3.0)
    logw = torch.log_softmax(torch.randn(16, 3), -1)
    assert torch.allclose(tangent_to_assignment(V, logw), torch.softmax(logw + 3 * V, -1))


@pytest.mark.parametrize("method", [Exact(), LowRank(), LowRank(recompute_forward=True)])
def test_float32_keeps_dtype_and_matches_float64(method):
    op64, p, D, G = make_inputs(8, 8, seed=7)
    _, gp64, gd64, _ = layer_grads(method, op64, p, D, G)
    op32 = GridWeights(8, 8, 3, dtype=torch.float32)
    V, gp, gd, _ = layer_grads(method, op32, p.float(), D.float(), G.float())
    assert V.dtype == gp.dtype == gd.dtype == torch.float32
    assert cosine(gp.double(), gp64) > 0.9999 and cosine(gd.double(), gd64) > 0.9999
    # a float64 stencil is converted to the inputs' dtype
    V2 = linearized_flow(p.float(), D.float(), op64, rho=0.5, T=3.0, method=method)
    assert V2.dtype == torch.float32


def _one_line(excinfo):
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


def test_bad_inputs_raise_one_line_errors():
    op, p, D, _ = make_inputs(4, 4)
    layer = lambda pp, DD, lw=None, **kw: linearized_flow(pp, DD, op, log_assignment=lw, **dict(dict(rho=0.5, T=3.0), **kw))
    cases = [
        (UserInputError, lambda: layer(p[:, :8], D), "patches must have shape"),
        (UserInputError, lambda: layer(p, D[:10]), "distances must have shape"),
        (UserInputError, lambda: layer(p, D[:, :1]), "J >= 2"),
        (UserInputError, lambda: layer(2 * p, D), "sum to 1"),
        (UserInputError, lambda: layer(p - 0.2, D), "non-negative"),
        (UserInputError, lambda: layer(p, D.masked_fill(D > 1.5, float("nan"))), "finite"),
        (UserInputError, lambda: layer(p, D.float()), "share dtype"),
        (UserTypeError, lambda: layer(p.numpy(), D), "torch.Tensor"),
        (UserTypeError, lambda: layer((p > 0).long(), D), "floating dtype"),
        (UserInputError, lambda: layer(p, D, D[:3]), "log_assignment"),
        (UserInputError, lambda: layer(p, D, rho=0.0), "rho"),
        (UserInputError, lambda: layer(p, D, rho=-1.0), "rho"),
        (UserTypeError, lambda: layer(p, D, rho="big"), "rho"),
        (UserInputError, lambda: layer(p, D, T=float("inf")), "T"),
        (UserTypeError, lambda: layer(p, D, method="lowrank"), "method"),
        (UserTypeError, lambda: linearized_flow(p, D, p), "WeightOperator"),
        (UserInputError, lambda: LowRank(m=0), "m must be"),
        (UserTypeError, lambda: LowRank(rank=1.5), "rank"),
        (UserTypeError, lambda: LowRank(recompute_forward=1), "recompute_forward"),
        (UserInputError, lambda: linearized_flow(torch.full((1600, 9), 1 / 9), torch.rand(1600, 3),
                                                 GridWeights(40, 40, 3), method=Exact()), "I*J"),
    ]
    for exc, fn, text in cases:
        with pytest.raises(exc) as e:
            fn()
        assert text in _one_line(e), (text, str(e.value))


def test_function_is_usable_directly():
    op, p, D, G = make_inputs(4, 4)
    pp = p.clone().requires_grad_(True)
    V = LinearizedFlowFunction.apply(pp.unsqueeze(0), D.unsqueeze(0), op, 0.5, 3.0, Exact(), None)
    V.backward(G.unsqueeze(0))
    assert pp.grad.shape == p.shape
