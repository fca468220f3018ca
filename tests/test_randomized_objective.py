"""Differentiable entropy estimates of soft samples: exactness on integer samples, unbiased score
gradients, the paper's smoothed support."""

import math

import pytest
import torch

from flowlearn._checks import UserInputError, UserTypeError
from flowlearn.pgm import entropy_estimates, exact_inference
from flowlearn.pgm.enumeration import configurations
from flowlearn.randomized.objective import (
    differentiable_entropy,
    embed_factorized,
    entropy_score_surrogate,
    mixture_log_density,
    smoothed_support,
    smoothed_support_entropy,
)

from test_pgm_entropy import SMALL, exact_samples

pytestmark = pytest.mark.usefixtures("one_thread")


def integer_log_samples(configs, c, dtype=torch.float64):
    onehot = torch.nn.functional.one_hot(configs, c).to(dtype)
    return torch.log(onehot)  # -inf off the labels


def plugin(configs, c, bias_correction=True):
    est = entropy_estimates(configs, c)
    return est.miller_madow if bias_correction else est.plugin


@pytest.mark.parametrize("estimator", ["samples", "support"])
@pytest.mark.parametrize("bias_correction", [False, True])
def test_differentiable_entropy_exact_for_integer_samples(estimator, bias_correction):
    g = torch.Generator().manual_seed(0)
    cfg = torch.randint(3, (40, 4), generator=g)
    cfg[20:] = cfg[:20]  # repeated configurations
    h = differentiable_entropy(integer_log_samples(cfg, 3), estimator=estimator, bias_correction=bias_correction)
    ref = plugin(cfg, 3, bias_correction)
    assert float(h) == pytest.approx(ref, abs=1e-12)
    assert torch.isfinite(h)


def test_random_roundings_change_nothing_for_integer_samples():
    cfg = torch.randint(2, (30, 5), generator=torch.Generator().manual_seed(1))
    ls = integer_log_samples(cfg, 2)
    a = differentiable_entropy(ls, random_roundings=3, generator=torch.Generator().manual_seed(2))
    assert float(a) == pytest.approx(plugin(cfg, 2), abs=1e-12)
    _, h = entropy_score_surrogate(ls, num_roundings=3)
    assert float(h) == pytest.approx(plugin(cfg, 2, False), abs=1e-12)


def test_mixture_log_density_matches_dense_embedding():
    s = torch.softmax(torch.randn(7, 3, 2), -1)
    cfg = configurations(3, 2)
    dense = embed_factorized(s).mean(0)  # (1/m) sum_l T(S^l)
    torch.testing.assert_close(mixture_log_density(s.log(), cfg), dense.log())


def test_score_surrogate_gradient_is_unbiased():
    # model: the mixture of m products P = (1/m) sum_l T(softmax(W_l)); its entropy gradient by enumeration
    torch.manual_seed(0)
    m, n, c = 3, 3, 2
    w = torch.randn(m, n, c, requires_grad=True)
    p = embed_factorized(torch.softmax(w, -1)).mean(0)
    neg_h = (p * p.log()).sum()
    exact_grad, = torch.autograd.grad(neg_h, w)
    w2 = w.detach().clone().requires_grad_(True)
    sur, h = entropy_score_surrogate(torch.log_softmax(w2, -1), num_roundings=40000,
                                     generator=torch.Generator().manual_seed(5))
    est, = torch.autograd.grad(sur, w2)
    assert float(h) == pytest.approx(float(-neg_h.detach()), abs=0.02)
    err = (est - exact_grad).norm() / exact_grad.norm()
    assert err < 0.05, f"relative gradient error {err:.3f}"


def test_paper_estimator_lacks_mode_balancing_gradient():
    # two well separated integral-ish clusters of unequal size: the true entropy gradient moves mass
    # toward the small cluster; eq. (22) gives (almost) no such signal, the support form does.
    base = torch.tensor([[8.0, -8.0]] * 4)
    w = torch.stack([base] * 6 + [-base] * 2).requires_grad_(True)  # 6 samples in A, 2 in B
    grads = {}
    for est in ("samples", "support"):
        h = differentiable_entropy(torch.log_softmax(w, -1), estimator=est, bias_correction=False)
        grads[est], = torch.autograd.grad(h, w)
    # d H / d logit toward own label, per cluster: support form favours the small cluster
    small = grads["support"][6:, :, 1].mean() - grads["support"][:6, :, 0].mean()
    assert small > 0
    assert grads["samples"].abs().max() < 1e-4 * max(grads["support"].abs().max(), 1e-30) + 1e-6


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"shape \(m, n, c\)"):
        differentiable_entropy(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="estimator must be one of"):
        differentiable_entropy(torch.zeros(3, 2, 2), estimator="plugin")
    with pytest.raises(ValueError, match="num_roundings"):
        entropy_score_surrogate(torch.zeros(3, 2, 2), num_roundings=0)
    with pytest.raises(UserTypeError, match="log_samples must be a floating tensor"):
        smoothed_support_entropy(torch.zeros(2, 3, 2, dtype=torch.long))
    with pytest.raises(UserInputError, match=r"log_samples must have shape \(m, n, c\)"):
        smoothed_support(torch.zeros(2, 3))
    with pytest.raises(UserInputError, match="log-probabilities"):
        smoothed_support(torch.ones(2, 3, 2))


# ---------------------------------------------------------------------------- smoothed support (paper)
def soft(configs, c, eps):
    """Soft samples :math:`(1 - \\epsilon) e_{\\alpha} + \\epsilon / c` around integer samples, as log S."""
    onehot = torch.nn.functional.one_hot(configs, c).double()
    return ((1 - eps) * onehot + eps / c).log()


def test_smoothed_support_equals_miller_madow_for_integer_samples():
    configs = exact_samples(SMALL, 1000, seed=0)
    log_s = torch.nn.functional.one_hot(configs, 2).double().log()  # exact zeros: -inf
    ref = entropy_estimates(configs, 2)
    assert float(smoothed_support(log_s)) == ref.support
    assert float(smoothed_support_entropy(log_s)) == pytest.approx(ref.miller_madow, abs=1e-12)
    # and against the exact entropy (e^H = 13, m = 1000): within 0.1 nats
    assert abs(float(smoothed_support_entropy(log_s)) - exact_inference(SMALL).entropy) < 0.1


def test_smoothed_support_is_continuous_and_differentiable():
    configs = exact_samples(SMALL, 400, seed=1)
    ref = entropy_estimates(configs, 2).miller_madow
    values = [float(smoothed_support_entropy(soft(configs, 2, eps))) for eps in (1e-2, 1e-4, 1e-8)]
    assert abs(values[-1] - ref) < 1e-5 and abs(values[1] - ref) < abs(values[0] - ref)
    s_hat = entropy_estimates(configs, 2).support
    log_s = soft(configs, 2, 0.05).requires_grad_(True)
    s_sigma = smoothed_support(log_s)
    h_bar = 12 * float(-(0.975 * math.log(0.975) + 0.025 * math.log(0.025)))  # n H(S_i) for eps = 0.05
    assert float(s_sigma.detach()) == pytest.approx(s_hat * math.exp(h_bar), rel=1e-10)
    smoothed_support_entropy(log_s).backward()
    assert torch.isfinite(log_s.grad).all() and float(log_s.grad.abs().sum()) > 0


def test_smoothed_support_capped_at_full_support():
    g = torch.Generator().manual_seed(0)
    uniform = torch.full((50, 4, 3), -math.log(3.0), dtype=torch.float64)
    uniform = uniform + 1e-3 * torch.rand(50, 4, 3, generator=g, dtype=torch.float64)
    uniform = torch.log_softmax(uniform, -1)
    assert float(smoothed_support(uniform)) <= 3**4 * (1 + 1e-12)
