"""Gibbs samplers stream their statistics: equal to the stored-sample computation, close to exact
enumeration, and with memory independent of the number of samples (issue 22)."""

import pytest
import torch
from test_pgm_enum import random_model

from flowlearn._checks import UserInputError
from flowlearn.experiments.photo_segmentation import (
    PhotoSegmentationConfig,
    segment_memory,
)
from flowlearn.pgm import GibbsSampler, exact_inference, grid_potts_gibbs, potts_grid
from flowlearn.pgm import gibbs as gibbs_module

pytestmark = pytest.mark.usefixtures("one_thread")


def _potts(rows=3, cols=4, c=3, coupling=0.8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return potts_grid(torch.randn(rows, cols, c, dtype=torch.float64, generator=g), coupling)


def _run(kind, model, num_samples, **kw):
    if kind == "grid":
        return grid_potts_gibbs(model, num_samples, num_chains=8, burn_in=5, seed=3, **kw)
    return GibbsSampler(8, burn_in=5, seed=3).sample(model, num_samples, **kw)


@pytest.mark.parametrize("kind", ["grid", "general"])
def test_streamed_statistics_equal_the_stored_samples(kind):
    """Same seed, same chain: the streamed counts, per-chain energies and standard errors are those of the
    kept samples (counts bit for bit), and a streaming-only run gives the identical statistics."""
    model = _potts() if kind == "grid" else random_model(n=6, c=3, num_edges=8, seed=4)
    kept = _run(kind, model, 8 * 25, keep_samples=True)
    configs = kept.configs
    assert configs.shape == (200, model.num_nodes) and kept.samples_per_chain == 25 and kept.num_samples == 200
    onehot = torch.nn.functional.one_hot(configs, model.num_labels)
    assert torch.equal(kept.marginals, onehot.sum(0).double() / 200)
    per_chain = onehot.reshape(8, 25, model.num_nodes, -1).double().mean(1)
    torch.testing.assert_close(kept.chain_marginals, per_chain, rtol=0, atol=1e-15)
    torch.testing.assert_close(kept.marginal_standard_error, per_chain.std(0) / 8 ** 0.5, rtol=0, atol=1e-15)
    energies = model.energy(configs).double().reshape(8, 25)
    torch.testing.assert_close(kept.chain_energy, energies.mean(1), rtol=1e-12, atol=1e-12)
    assert kept.mean_energy == pytest.approx(float(energies.mean()), rel=1e-12)
    assert kept.energy_standard_error == pytest.approx(float(energies.mean(1).std() / 8 ** 0.5), rel=1e-9)
    assert torch.equal(kept.final, configs.reshape(8, 25, -1)[:, -1])
    # the unbiased cross-chain estimate of E[Hamming] of two independent samples, from the per-chain marginals
    q = per_chain
    p2 = (q.sum(0) ** 2 - (q * q).sum(0)) / (8 * 7)
    assert kept.expected_hamming() == pytest.approx(float((1 - p2.sum(-1)).mean()), rel=1e-12)

    streamed = _run(kind, model, 8 * 25, keep_samples=False)
    assert streamed.kept is None
    assert torch.equal(streamed.chain_counts, kept.chain_counts) and torch.equal(streamed.final, kept.final)
    assert torch.equal(streamed.chain_energy, kept.chain_energy)
    with pytest.raises(UserInputError, match="kept no samples") as err:
        _ = streamed.configs
    assert "\n" not in str(err.value)


def test_streamed_statistics_match_exact_enumeration():
    model = _potts(2, 3, 3, coupling=0.7, seed=1)
    exact = exact_inference(model)
    run = grid_potts_gibbs(model, 40000, num_chains=200, burn_in=50, seed=2, keep_samples=False)
    assert float((run.marginals - exact.marginals).abs().max()) < 0.02
    assert run.mean_energy == pytest.approx(exact.expected_energy, abs=5 * run.energy_standard_error + 0.01)
    p = exact.marginals.double()
    assert run.expected_hamming() == pytest.approx(float((1 - (p * p).sum(-1)).mean()), abs=0.01)
    general = GibbsSampler(200, burn_in=50, seed=2).sample(model, 20000, keep_samples=False)
    assert float((general.marginals - exact.marginals).abs().max()) < 0.03


@pytest.mark.parametrize("kind", ["grid", "general"])
def test_memory_does_not_grow_with_num_samples(kind, monkeypatch):
    """The result of a streaming run holds the same tensors for 16 and 800 samples per chain; beyond
    MAX_KEPT_ENTRIES the default keeps no samples and keep_samples=True is refused before sampling."""
    model = _potts(6, 7, 3)

    def tensors(res):
        return {k: tuple(v.shape) for k, v in vars(res).items() if isinstance(v, torch.Tensor)}

    small, large = (_run(kind, model, 8 * k, keep_samples=False) for k in (16, 800))
    assert large.num_samples == 50 * small.num_samples
    assert tensors(small) == tensors(large) == {"chain_counts": (8, 42, 3), "chain_energy": (8,), "final": (8, 42)}
    monkeypatch.setattr(gibbs_module, "MAX_KEPT_ENTRIES", 8 * 100 * 42)
    assert _run(kind, model, 8 * 100).kept.shape == (8, 100, 42)  # default: kept within the bound
    beyond = _run(kind, model, 8 * 101)                            # beyond it: streamed only
    with pytest.raises(UserInputError, match="num_samples x num_nodes = 33936 > MAX_KEPT_ENTRIES = 33600"):
        _ = beyond.configs
    with pytest.raises(UserInputError, match=r"keep_samples=True needs num_samples x num_nodes <= 33600, got "
                                             r"num_samples=1000000000"):
        _run(kind, model, 10**9, keep_samples=True)


def test_segment_memory_estimate_is_independent_of_gibbs_samples():
    cfg = PhotoSegmentationConfig(labels=3)
    est = segment_memory((86, 128), 3, cfg)
    assert set(est) == {"training", "flow_sampling", "gibbs", "outputs", "total"}
    assert est["total"] >= max(est["training"], est["flow_sampling"], est["gibbs"]) + est["outputs"]
    many = segment_memory((86, 128), 3, PhotoSegmentationConfig(labels=3, gibbs_samples=10**9))
    assert many == est
    bigger = segment_memory((134, 200), 3, PhotoSegmentationConfig(labels=3, batch_size=64, gibbs_chains=256))
    assert bigger["training"] > 3 * est["training"] and bigger["gibbs"] > 4 * est["gibbs"]
    sparse = segment_memory((86, 128), 3, PhotoSegmentationConfig(labels=3, interaction="sparse"))
    assert sparse["training"] > est["training"]


def test_on_sample_streams_every_retained_state():
    """``on_sample`` sees exactly the states a kept run stores (in sweep order), with or without keeping them."""
    model = random_model(n=6, c=3, num_edges=8, seed=4)
    kept = GibbsSampler(8, burn_in=5, seed=3).sample(model, 8 * 25, keep_samples=True)
    seen = []
    streamed = GibbsSampler(8, burn_in=5, seed=3).sample(model, 8 * 25, keep_samples=False, on_sample=seen.append)
    assert len(seen) == 25 and torch.equal(torch.stack(seen, 1), kept.kept)
    assert torch.equal(streamed.chain_counts, kept.chain_counts)


def test_table1_gibbs_row_beyond_the_keep_bound(monkeypatch):
    """The Table 1 Gibbs row streams its samples into the evaluation: more samples than MAX_KEPT_ENTRIES allows
    to keep still give a finite entropy and KL, equal to the kept computation (``flowlearn ising --rows 10
    --cols 14`` with its defaults failed here after training)."""
    from flowlearn.experiments.table1 import IsingExperimentConfig, run_ising_experiment

    cfg = IsingExperimentConfig(rows=2, cols=3, iterations=2, batch_size=8, eval_samples=64, gibbs_samples=2000,
                                gibbs_chains=10, gibbs_burn_in=5, mean_field_restarts=2, mean_field_iterations=5,
                                mean_field_sweeps=5, reference_samples=100)
    kept = run_ising_experiment(cfg, show_progress=False).table["gibbs"]
    monkeypatch.setattr(gibbs_module, "MAX_KEPT_ENTRIES", 100)
    streamed = run_ising_experiment(cfg, show_progress=False).table["gibbs"]
    for key in ("kl", "energy", "entropy", "marginal_difference"):
        assert streamed[key] == pytest.approx(kept[key], rel=1e-12, abs=1e-12), key
    assert 0.0 <= streamed["kl"] < 1.0
