"""A plug-in entropy from too few samples for the support is not reported as a number (issue 22)."""

import math

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
