"""Entropy estimators against exact entropies of small Gibbs distributions (enumeration).

Exact samples are drawn from the enumerated table :math:`P^*` with seeded generators.  The
comments quote the mean absolute errors measured with these seeds; each tolerance leaves a
margin of several standard errors of that mean (per-seed spread 0.02--0.14 nats).
"""

import math

import pytest
import torch

from flowlearn._checks import UserInputError, UserTypeError
from flowlearn.randomized import (
    chao_shen_entropy,
    configurations,
    entropy_estimates,
    entropy_estimates_from_counts,
    exact_inference,
    ising_grid,
    log_probability_table,
    plugin_entropy,
    potts_grid,
    smoothed_support,
    smoothed_support_entropy,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def exact_samples(model, m, seed):
    """``m`` exact samples of the Gibbs distribution of ``model`` and its exact entropy."""
    p = log_probability_table(model).exp()
    g = torch.Generator().manual_seed(seed)
    idx = torch.multinomial(p, m, replacement=True, generator=g)
    return configurations(model.num_nodes, model.num_labels)[idx]


def errors(model, m, seeds):
    h = exact_inference(model).entropy
    rows = []
    for seed in seeds:
        est = entropy_estimates(exact_samples(model, m, seed), model.num_labels)
        rows.append([est.plugin - h, est.miller_madow - h, est.chao_shen - h])
    return torch.tensor(rows)  # (seeds, 3): plug-in, Miller-Madow, Chao-Shen


# moderate support: e^H = 870 configurations, m = 300 samples
MODERATE = ising_grid(3, 4, field=1.0, coupling=0.5, dtype=torch.float64)   # H = 6.768
POTTS = potts_grid(torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64), 0.5)
SMALL = ising_grid(3, 4, field=3.0, coupling=2.1, dtype=torch.float64)     # H = 2.554, e^H = 13


def test_hand_computed_counts():
    est = entropy_estimates_from_counts(torch.tensor([3, 1, 1, 0]))
    p = torch.tensor([0.6, 0.2, 0.2], dtype=torch.float64)
    assert est.plugin == pytest.approx(float(-(p * p.log()).sum()), abs=1e-14)
    assert est.miller_madow == pytest.approx(est.plugin + 2 / 10, abs=1e-14)
    assert (est.support, est.singletons, est.coverage, est.num_samples) == (3, 2, pytest.approx(0.6), 5)
    pa = 0.6 * p
    expected = float((-(pa * pa.log()) / (1 - (1 - pa) ** 5)).sum())
    assert est.chao_shen == pytest.approx(expected, abs=1e-14)
    assert est.chao_shen == pytest.approx(1.4895247, abs=1e-6)


def test_degenerate_counts():
    one = entropy_estimates_from_counts([7])
    assert (one.plugin, one.miller_madow, one.chao_shen, one.coverage) == (0.0, 0.0, 0.0, 1.0)
    # all singletons: f1 = m - 1 keeps the coverage positive and the estimate finite
    all_single = entropy_estimates_from_counts([1] * 10)
    assert all_single.coverage == pytest.approx(0.1)
    assert math.isfinite(all_single.chao_shen) and all_single.chao_shen > all_single.miller_madow


def test_agrees_with_plugin_entropy():
    configs = exact_samples(POTTS, 500, seed=0)
    est = entropy_estimates(configs, 3)
    ref = plugin_entropy(configs, 3)
    assert est.plugin == pytest.approx(ref.plugin, abs=1e-12)
    assert est.miller_madow == pytest.approx(ref.entropy, abs=1e-12)
    assert est.support == ref.support
    assert chao_shen_entropy(configs, 3) == est.chao_shen


@pytest.mark.parametrize("model, m, cs_tol, ratio", [
    # measured over 20 seeds (mean |error|): plug-in 1.535, Miller-Madow 1.172, Chao-Shen 0.670
    (MODERATE, 300, 0.9, 0.6),
    # e^H = 337, m = 1000: plug-in 0.602, Miller-Madow 0.413, Chao-Shen 0.276
    (POTTS, 1000, 0.4, 0.6),
], ids=["ising3x4-m300", "potts2x4-m1000"])
def test_chao_shen_beats_plugin_at_moderate_support(model, m, cs_tol, ratio):
    err = errors(model, m, range(20)).abs().mean(0)
    plug, mm, cs = err.tolist()
    assert cs < cs_tol
    assert cs < ratio * plug
    assert cs < mm < plug


def test_all_estimators_consistent_for_large_samples():
    # m = 10^4 >> e^H: measured mean |error| 0.182 (plug-in), 0.087 (MM), 0.034 (CS)
    err = errors(MODERATE, 10_000, range(5)).abs().mean(0)
    assert err[0] < 0.25 and err[1] < 0.12 and err[2] < 0.06


def test_small_support_miller_madow_and_chao_shen_close():
    # e^H = 13, m = 1000: measured mean |error| 0.051 (plug-in), 0.031 (MM), 0.025 (CS)
    err = errors(SMALL, 1000, range(10)).abs().mean(0)
    assert err[1] < 0.08 and err[2] < 0.08


def test_bad_input():
    with pytest.raises(UserTypeError, match="configs must be an integer array"):
        entropy_estimates(torch.zeros(3, 2), 2)
    with pytest.raises(UserInputError, match=r"configs must have shape \(n_samples, n\)"):
        entropy_estimates(torch.zeros(4, dtype=torch.long), 2)
    with pytest.raises(UserInputError, match=r"labels in \[0, 1\], got range \[0, 2\]"):
        entropy_estimates(torch.tensor([[0, 2]]), 2)
    with pytest.raises(UserInputError, match="num_labels must be >= 2"):
        entropy_estimates(torch.tensor([[0, 0]]), 1)
    with pytest.raises(UserInputError, match="counts must be non-negative"):
        entropy_estimates_from_counts([3, -1])
    with pytest.raises(UserInputError, match="at least one sample"):
        entropy_estimates_from_counts([0, 0])
    with pytest.raises(UserTypeError, match="counts must be a 1-D integer array"):
        entropy_estimates_from_counts([0.5, 1.0])
    with pytest.raises(UserInputError, match="counts must be 1-dimensional"):
        entropy_estimates_from_counts([[1, 2]])
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
    ref = plugin_entropy(configs, 2)
    assert float(smoothed_support(log_s)) == ref.support
    assert float(smoothed_support_entropy(log_s)) == pytest.approx(ref.entropy, abs=1e-12)
    # and against the exact entropy (e^H = 13, m = 1000): within 0.1 nats
    assert abs(float(smoothed_support_entropy(log_s)) - exact_inference(SMALL).entropy) < 0.1


def test_smoothed_support_is_continuous_and_differentiable():
    configs = exact_samples(SMALL, 400, seed=1)
    ref = plugin_entropy(configs, 2).entropy
    values = [float(smoothed_support_entropy(soft(configs, 2, eps))) for eps in (1e-2, 1e-4, 1e-8)]
    assert abs(values[-1] - ref) < 1e-5 and abs(values[1] - ref) < abs(values[0] - ref)
    s_hat = plugin_entropy(configs, 2).support
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
