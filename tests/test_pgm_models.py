"""Pairwise models: energies, mean-field energy, constructors and validation."""

import pytest
import torch

from flowlearn.pgm import PairwiseModel, grid_edges, ising_grid
from flowlearn.pgm.enumeration import configurations
from flowlearn.pgm.mean_field import mean_field_free_energy
from flowlearn.pgm.mean_field import expected_local_energies
from flowlearn.randomized.objective import embed_factorized

from test_pgm_enum import random_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_ising_grid_layout():
    m = ising_grid(3, 4, field=2.0, coupling=0.5)
    u = m.unary.reshape(3, 4, 2)
    assert torch.all(u[:, 0, 0] == -2.0) and torch.all(u[:, -1, 0] == 2.0)
    assert torch.all(u[:, 1:-1] == 0) and torch.all(u[..., 1] == 0)
    assert m.num_edges == 3 * 3 + 2 * 4
    cfg = torch.zeros(1, 12, dtype=torch.long)
    cfg[0, [3, 7, 11]] = 1  # right column class 1: energy -3 * 2 + wall of 3 edges
    assert float(m.energy(cfg)) == pytest.approx(-6.0 + 3 * 0.5)


def test_grid_edges_are_neighbours():
    e = grid_edges(3, 5)
    r, c = e // 5, e % 5
    assert torch.all((r[:, 0] - r[:, 1]).abs() + (c[:, 0] - c[:, 1]).abs() == 1)
    assert e.shape == (3 * 4 + 2 * 5, 2)


def test_mean_field_energy_equals_enumeration():
    m = random_model(n=5, c=3, num_edges=6)
    q = torch.softmax(torch.randn(4, 5, 3), -1)
    e = m.energy(configurations(5, 3))
    direct = embed_factorized(q) @ e
    torch.testing.assert_close(m.mean_field_energy(q), direct)
    # its q-gradient is the expected local energy
    qq = q[0].clone().requires_grad_(True)
    m.mean_field_energy(qq).backward()
    torch.testing.assert_close(qq.grad, expected_local_energies(m, q[0]))


def test_local_energies_give_conditionals():
    m = random_model(n=5, c=3, num_edges=6)
    cfg = configurations(5, 3)[::17]
    local = m.local_energies(cfg)
    for i in range(5):
        for a in range(3):
            alt = cfg.clone()
            alt[:, i] = a
            # energy difference of changing node i equals the local energy difference
            torch.testing.assert_close(m.energy(alt) - m.energy(cfg),
                                       local[:, i, a] - local.gather(2, cfg[:, :, None])[:, i, 0])


def test_free_energy_is_kl_minus_log_z():
    from flowlearn.pgm import exact_inference
    from flowlearn.pgm.enumeration import kl_from_table
    m = random_model(n=4, c=2, num_edges=4)
    q = torch.softmax(torch.randn(4, 2), -1)
    log_z = exact_inference(m).log_z
    expected = kl_from_table(m, embed_factorized(q))
    assert float(mean_field_free_energy(m, q)) + log_z == pytest.approx(expected, abs=1e-12)


def test_validation_messages():
    with pytest.raises(ValueError, match="self-loops"):
        PairwiseModel(torch.zeros(3, 2), [[0, 0]], torch.zeros(2, 2))
    with pytest.raises(ValueError, match="duplicate"):
        PairwiseModel(torch.zeros(3, 2), [[0, 1], [1, 0]], torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"node indices in \[0, 2\]"):
        PairwiseModel(torch.zeros(3, 2), [[0, 3]], torch.zeros(2, 2))
    with pytest.raises(ValueError, match="pairwise must have shape"):
        PairwiseModel(torch.zeros(3, 2), [[0, 1]], torch.zeros(2, 2, 2))
    with pytest.raises(ValueError, match="finite"):
        PairwiseModel(torch.tensor([[0.0, float("nan")]]), torch.zeros(0, 2, dtype=torch.long), torch.zeros(2, 2))
    m = ising_grid(2, 2)
    with pytest.raises(ValueError, match=r"labels in \[0, 1\]"):
        m.energy(torch.tensor([[0, 1, 2, 0]]))
    with pytest.raises(TypeError, match="integer"):
        m.energy(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="must have shape"):
        m.energy(torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="field must be a finite number"):
        ising_grid(2, 2, field=float("inf"))
