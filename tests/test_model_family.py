"""The held-out model family: determinism, ranges, regimes, and exact statistics against enumeration."""

from dataclasses import replace

import pytest
import torch

from flowlearn.experiments.model_family import (
    DEVELOPMENT_SEEDS,
    REGIMES,
    REPORT_SEEDS,
    build_model,
    critical_coupling,
    exact_statistics,
    family_model,
    family_spec,
    statistic_errors,
)
from flowlearn.pgm.enumeration import configurations
from flowlearn.pgm.transfer import transfer_matrix_feasible

SEEDS = list(DEVELOPMENT_SEEDS) + list(REPORT_SEEDS)


def test_critical_coupling_conventions():
    # Ising beta_c J = ln(1 + sqrt 2) / 2 in the +-1 convention; potts_grid's w is 2 beta J
    assert critical_coupling(2) == pytest.approx(2 * 0.44068679350977147, rel=1e-12)
    assert critical_coupling(3) == pytest.approx(1.005052538742381, rel=1e-10)


def test_deterministic_per_seed():
    for seed in (0, 5, 103):
        (s1, m1), (s2, m2) = family_model(seed), family_model(seed)
        assert s1 == s2
        assert torch.equal(m1.unary, m2.unary) and torch.equal(m1.pairwise, m2.pairwise)
    assert family_spec(1) != family_spec(2)


@pytest.mark.parametrize("seed", SEEDS)
def test_ranges_and_feasibility(seed):
    spec = family_spec(seed)
    assert 4 <= spec.rows <= spec.cols <= 16 and spec.cols >= 6
    assert spec.labels in (2, 3)
    assert spec.labels ** spec.rows <= 2**16
    lo, hi = REGIMES[spec.regime]
    assert lo <= spec.coupling_ratio <= hi
    assert spec.coupling == pytest.approx(spec.coupling_ratio * critical_coupling(spec.labels))
    model = build_model(spec)
    assert model.grid_shape == (spec.rows, spec.cols) and model.num_labels == spec.labels
    assert transfer_matrix_feasible(model)


@pytest.mark.parametrize("seeds", [DEVELOPMENT_SEEDS, REPORT_SEEDS])
def test_regimes_and_labels_covered(seeds):
    specs = [family_spec(s) for s in seeds]
    assert {(s.regime, s.labels) for s in specs} == {(r, c) for r in REGIMES for c in (2, 3)}


def _brute_force(model):
    x = configurations(model.num_nodes, model.num_labels)
    e = model.energy(x)
    p = torch.softmax(-e, 0)
    marg = torch.stack([(p[:, None] * (x == a).double()).sum(0) for a in range(model.num_labels)], 1)
    same = (x[:, model.edges[:, 0]] == x[:, model.edges[:, 1]]).double()
    return torch.logsumexp(-e, 0), marg, p @ same, float(p @ e)


@pytest.mark.parametrize("seed,rows,cols", [(3, 3, 4), (108, 4, 5)])
def test_exact_statistics_match_enumeration(seed, rows, cols):
    spec = replace(family_spec(seed), rows=rows, cols=cols)
    model = build_model(spec)
    st = exact_statistics(model)
    log_z, marg, agree, energy = _brute_force(model)
    assert st.log_z == pytest.approx(float(log_z), abs=1e-10)
    assert torch.allclose(st.marginals, marg, atol=1e-10, rtol=0)
    assert torch.allclose(st.agreement, agree, atol=1e-10, rtol=0)
    assert torch.allclose(st.pairwise.sum((1, 2)), torch.ones(model.num_edges, dtype=torch.float64), atol=1e-12)
    assert st.mean_energy == pytest.approx(energy, abs=1e-10)
    err = statistic_errors(st, marg, energy, agree)
    assert max(err.values()) < 1e-10
