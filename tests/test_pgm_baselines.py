"""Mean field, Gibbs sampler and loopy BP against exact enumeration."""

import pytest
import torch

from flowlearn.pgm import GibbsSampler, LoopyBP, MeanField, PairwiseModel, exact_inference, ising_grid
from flowlearn.pgm.mean_field import mean_field_free_energy
from flowlearn.randomized import evaluate_samples
from flowlearn.randomized.inference import evaluate_factorized

from test_pgm_enum import random_model

pytestmark = pytest.mark.usefixtures("one_thread")


def chain_model(n=7, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return PairwiseModel(torch.randn(n, c, generator=g), torch.stack([torch.arange(n - 1), torch.arange(1, n)], 1),
                         torch.randn(n - 1, c, c, generator=g))


def test_bp_is_exact_on_a_tree():
    m = chain_model()
    # add a branch to make it a non-chain tree
    m = PairwiseModel(torch.cat([m.unary, torch.randn(1, 3)]), torch.cat([m.edges, torch.tensor([[3, 7]])]),
                      torch.cat([m.pairwise, torch.randn(1, 3, 3)]))
    ex = exact_inference(m)
    bp = LoopyBP(damping=0.0).fit(m)
    assert bp.converged
    assert -bp.bethe_free_energy == pytest.approx(ex.log_z, abs=1e-9)
    torch.testing.assert_close(bp.marginals, ex.marginals, atol=1e-9, rtol=0)
    assert bp.entropy == pytest.approx(ex.entropy, abs=1e-9)
    assert bp.energy == pytest.approx(ex.expected_energy, abs=1e-9)


def test_bp_on_loopy_grid_is_approximate_but_close():
    m = ising_grid(3, 3, field=1.0, coupling=0.3)
    ex = exact_inference(m)
    bp = LoopyBP().fit(m)
    assert bp.converged
    assert (bp.marginals - ex.marginals).abs().max() < 0.02
    assert -bp.bethe_free_energy == pytest.approx(ex.log_z, abs=0.05)
    with pytest.raises(ValueError, match="damping"):
        LoopyBP(damping=1.0)


def test_gibbs_sampler_matches_exact_marginals():
    m = random_model(n=6, c=2, num_edges=7, seed=2)
    ex = exact_inference(m)
    res = GibbsSampler(500, burn_in=50, thinning=2, seed=1).sample(m, 40000)
    assert res.configs.shape == (40000, 6) and res.configs.dtype == torch.long
    ev = evaluate_samples(m, res.configs, ex)
    assert ev.marginal_difference < 0.01
    assert abs(ev.kl) < 0.02
    assert ev.energy == pytest.approx(ex.expected_energy, abs=0.03)


@pytest.mark.parametrize("method", ["adam", "coordinate"])
def test_mean_field_finds_a_stationary_point(method):
    m = random_model(n=6, c=3, num_edges=7, seed=3)
    ex = exact_inference(m)
    res = MeanField(20, method=method, iterations=400 if method == "adam" else 100).fit(m, log_z=ex.log_z)
    q = res.marginals.clone().requires_grad_(True)
    g, = torch.autograd.grad(mean_field_free_energy(m, q), q)
    riem = q.detach() * (g - (q.detach() * g).sum(-1, keepdim=True))  # replicator: Riemannian gradient
    assert riem.abs().max() < 1e-4
    assert res.kl == pytest.approx(float(mean_field_free_energy(m, res.marginals)) + ex.log_z)
    assert res.kl >= -1e-12  # a KL divergence
    assert res.restart_free_energies.shape == (20,)
    ev = evaluate_factorized(m, res.marginals, ex)
    assert ev.kl == pytest.approx(res.kl, abs=1e-12)


def test_coordinate_ascent_never_increases_free_energy():
    m = random_model(n=6, c=3, num_edges=8, seed=4)
    prev = None
    for sweeps in (1, 2, 4, 8):
        f = MeanField(5, method="coordinate", iterations=sweeps, seed=0).fit(m).restart_free_energies
        if prev is not None:
            assert bool((f <= prev + 1e-12).all())
        prev = f


def test_table1_mean_field_row():
    m = ising_grid()
    ex = exact_inference(m)
    res = MeanField(1000, method="coordinate", iterations=200).fit(m, log_z=ex.log_z)
    ev = evaluate_factorized(m, res.marginals, ex)
    assert ev.kl == pytest.approx(1.968, abs=0.01)
    assert ev.energy == pytest.approx(-1.566, abs=0.01)
    assert ev.entropy == pytest.approx(1.602, abs=0.01)
    assert ev.marginal_difference == pytest.approx(0.198, abs=0.01)


def test_mean_field_validation():
    with pytest.raises(ValueError, match="method must be one of"):
        MeanField(method="newton")
    with pytest.raises(ValueError, match="num_restarts must be >= 1"):
        MeanField(0)


def test_edgeless_model_is_solved_exactly_by_all_baselines():
    m = PairwiseModel(torch.randn(4, 3), torch.zeros(0, 2, dtype=torch.long), torch.zeros(3, 3))
    ex = exact_inference(m)
    assert -LoopyBP().fit(m).bethe_free_energy == pytest.approx(ex.log_z, abs=1e-12)
    mf = MeanField(3, method="coordinate", iterations=1).fit(m, log_z=ex.log_z)
    assert mf.kl == pytest.approx(0.0, abs=1e-12)
    torch.testing.assert_close(mf.marginals, torch.softmax(-m.unary, -1))
