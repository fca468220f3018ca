"""A plug-in entropy from too few samples for the support is not reported as a number (issue 22)."""

import math

import pytest
import torch

from flowlearn.pgm import ising_grid
from flowlearn.pgm.enumeration import ExactResult
from flowlearn.randomized.inference import MIN_COVERAGE, evaluate_samples


def _reference(model):
    return ExactResult(float("nan"), torch.full((model.num_nodes, 2), 0.5, dtype=model.dtype), 0.0, 0.0, 0, 0.0)


def test_saturated_sample_gives_nan_entropy_and_says_so():
    model = ising_grid(rows=4, cols=8, field=0.0, coupling=0.0)       # 2^32 configurations, all equally likely
    g = torch.Generator().manual_seed(0)
    configs = torch.randint(2, (2000, model.num_nodes), generator=g)  # nearly all distinct: coverage ~ 0
    ev = evaluate_samples(model, configs, _reference(model))
    assert ev.entropy_saturated and math.isnan(ev.entropy) and math.isnan(ev.kl)
    assert abs(ev.marginal_difference) < 0.1 and math.isfinite(ev.energy)    # the other columns stay


def test_well_covered_sample_keeps_its_entropy():
    model = ising_grid(rows=1, cols=3, field=0.0, coupling=0.0)       # 8 configurations
    g = torch.Generator().manual_seed(1)
    configs = torch.randint(2, (4000, model.num_nodes), generator=g)
    ev = evaluate_samples(model, configs, _reference(model))
    assert not ev.entropy_saturated and abs(ev.entropy - 3 * math.log(2)) < 0.01
    assert 0 < MIN_COVERAGE < 1


@pytest.mark.parametrize("n, c", [(12, 3), (31, 2), (70, 3), (140, 2)])
def test_accumulator_counts_configurations_exactly_at_any_width(n, c):
    """The packed configuration keys (several 62-bit words for wide grids) count distinct samples exactly as
    a row-wise ``torch.unique`` does; marginal counts and energies as computed directly."""
    from flowlearn.pgm import potts_grid
    from flowlearn.pgm.entropy import entropy_estimates_from_counts
    from flowlearn.randomized.inference import SampleAccumulator

    g = torch.Generator().manual_seed(n)
    model = potts_grid(torch.randn(1, n, c, dtype=torch.float64, generator=g), 0.7)
    base = torch.randint(c, (40, n), generator=g)
    configs = base[torch.randint(40, (3000,), generator=g)]          # repeats, so counts > 1 matter
    configs[::7, -1] = (configs[::7, -1] + 1) % c                      # distinct only in the last node
    acc = SampleAccumulator(model)
    for chunk in configs.split(700):
        acc.add(chunk)
    est = entropy_estimates_from_counts(torch.unique(configs, dim=0, return_counts=True)[1])
    keys = torch.cat(acc._parts)
    got = torch.unique(keys, dim=0, return_counts=True)[1]
    assert got.numel() == est.support and torch.equal(got.sort().values, torch.unique(
        configs, dim=0, return_counts=True)[1].sort().values)
    assert torch.equal(acc.counts, torch.nn.functional.one_hot(configs, c).sum(0).double())
    assert acc.energy_sum == pytest.approx(float(model.energy(configs).double().sum()), rel=1e-12)
