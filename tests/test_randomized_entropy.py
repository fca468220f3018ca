"""Entropy estimators: exactness on integer samples, Miller-Madow, unbiased score gradients."""

import pytest
import torch

from flowlearn.randomized import (
    configurations,
    differentiable_entropy,
    embed_factorized,
    entropy_score_surrogate,
    mixture_log_density,
    plugin_entropy,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def integer_log_samples(configs, c, dtype=torch.float64):
    onehot = torch.nn.functional.one_hot(configs, c).to(dtype)
    return torch.log(onehot)  # -inf off the labels


def test_plugin_entropy_and_miller_madow():
    cfg = torch.tensor([[0, 1], [0, 1], [1, 1], [0, 0]])
    r = plugin_entropy(cfg, 2, bias_correction=False)
    p = torch.tensor([0.5, 0.25, 0.25])
    assert r.entropy == pytest.approx(float(-(p * p.log()).sum()), abs=1e-14)
    assert r.support == 3 and r.num_samples == 4
    rc = plugin_entropy(cfg, 2)
    assert rc.entropy == pytest.approx(r.entropy + (3 - 1) / (2 * 4), abs=1e-14)
    with pytest.raises(ValueError, match="integer tensor"):
        plugin_entropy(cfg.double(), 2)


@pytest.mark.parametrize("estimator", ["samples", "support"])
@pytest.mark.parametrize("bias_correction", [False, True])
def test_differentiable_entropy_exact_for_integer_samples(estimator, bias_correction):
    g = torch.Generator().manual_seed(0)
    cfg = torch.randint(3, (40, 4), generator=g)
    cfg[20:] = cfg[:20]  # repeated configurations
    h = differentiable_entropy(integer_log_samples(cfg, 3), estimator=estimator, bias_correction=bias_correction)
    ref = plugin_entropy(cfg, 3, bias_correction=bias_correction).entropy
    assert float(h) == pytest.approx(ref, abs=1e-12)
    assert torch.isfinite(h)


def test_random_roundings_change_nothing_for_integer_samples():
    cfg = torch.randint(2, (30, 5), generator=torch.Generator().manual_seed(1))
    ls = integer_log_samples(cfg, 2)
    a = differentiable_entropy(ls, random_roundings=3, generator=torch.Generator().manual_seed(2))
    assert float(a) == pytest.approx(plugin_entropy(cfg, 2).entropy, abs=1e-12)
    _, h = entropy_score_surrogate(ls, num_roundings=3)
    assert float(h) == pytest.approx(plugin_entropy(cfg, 2, bias_correction=False).entropy, abs=1e-12)


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
