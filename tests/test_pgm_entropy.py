"""Entropy estimates of integer samples against hand computations and exact entropies (enumeration).

Exact samples are drawn from the enumerated table :math:`P^*` with seeded generators.  The
comments quote the mean absolute errors measured with these seeds; each tolerance leaves a
margin of several standard errors of that mean (per-seed spread 0.02--0.14 nats).
"""

import math

import pytest
import torch

from flowlearn._checks import UserInputError, UserTypeError
from flowlearn.pgm import entropy_estimates, exact_inference, ising_grid, potts_grid
from flowlearn.pgm.entropy import entropy_estimates_from_counts
from flowlearn.pgm.enumeration import configurations, log_probability_table

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


def test_plugin_and_miller_madow():
    cfg = torch.tensor([[0, 1], [0, 1], [1, 1], [0, 0]])
    r = entropy_estimates(cfg, 2)
    p = torch.tensor([0.5, 0.25, 0.25])
    assert r.plugin == pytest.approx(float(-(p * p.log()).sum()), abs=1e-14)
    assert r.support == 3 and r.num_samples == 4
    assert r.miller_madow == pytest.approx(r.plugin + (3 - 1) / (2 * 4), abs=1e-14)


def test_samples_and_counts_agree():
    configs = exact_samples(POTTS, 500, seed=0)
    est = entropy_estimates(configs, 3)
    counts = torch.unique(configs, dim=0, return_counts=True)[1]
    assert est == entropy_estimates_from_counts(counts)


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
