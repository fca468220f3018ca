"""Exact enumeration against hand computations, transfer matrices and brute force."""

import math

import pytest
import torch

from flowlearn.pgm import PairwiseModel, exact_inference, ising_grid, kl_from_samples, potts_grid
from flowlearn.pgm.enumeration import configurations, kl_from_table, log_probability_table

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: no lock contention on 2 cores


def random_model(n=6, c=3, num_edges=7, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    perm = torch.randperm(len(pairs), generator=g)[:num_edges].tolist()
    edges = torch.tensor([pairs[k] if k % 2 else pairs[k][::-1] for k in perm])
    return PairwiseModel(torch.randn(n, c, generator=g, dtype=dtype), edges,
                         torch.randn(num_edges, c, c, generator=g, dtype=dtype))


def brute_force(model):
    cfg = configurations(model.num_nodes, model.num_labels)
    e = torch.stack([sum(model.unary[i, a] for i, a in enumerate(row.tolist()))
                     + sum(model.pairwise[k, row[i], row[j]] for k, (i, j) in enumerate(model.edges.tolist()))
                     for row in cfg])
    log_z = torch.logsumexp(-e, 0)
    p = torch.exp(-e - log_z)
    marg = torch.zeros(model.num_nodes, model.num_labels)
    for i in range(model.num_nodes):
        for a in range(model.num_labels):
            marg[i, a] = p[cfg[:, i] == a].sum()
    return e, log_z, p, marg


def test_two_node_hand_computed():
    # E(a, b) = u0[a] + u1[b] + w [a != b]; Z = e^0 + e^-(1+w) ... by hand
    unary = torch.tensor([[0.0, 1.0], [0.5, 0.0]])
    w = 2.0
    m = PairwiseModel(unary, [[0, 1]], w * (1 - torch.eye(2)))
    energies = {(0, 0): 0.5, (0, 1): 0.0 + 0.0 + w, (1, 0): 1.0 + 0.5 + w, (1, 1): 1.0}
    z = sum(math.exp(-e) for e in energies.values())
    r = exact_inference(m)
    assert r.log_z == pytest.approx(math.log(z), abs=1e-12)
    p00 = math.exp(-0.5) / z
    p01 = math.exp(-w) / z
    assert float(r.marginals[0, 0]) == pytest.approx(p00 + p01, abs=1e-12)
    mean_e = sum(e * math.exp(-e) / z for e in energies.values())
    assert r.expected_energy == pytest.approx(mean_e, abs=1e-12)
    assert r.entropy == pytest.approx(-sum(math.exp(-e) / z * math.log(math.exp(-e) / z)
                                           for e in energies.values()), abs=1e-12)
    assert m.energy(torch.tensor([[1, 0], [0, 1]])).tolist() == pytest.approx([energies[(1, 0)], energies[(0, 1)]])


def test_chain_transfer_matrix_log_z():
    n, c = 9, 3
    g = torch.Generator().manual_seed(3)
    unary = torch.randn(n, c, generator=g)
    pair = torch.randn(n - 1, c, c, generator=g)
    m = PairwiseModel(unary, torch.stack([torch.arange(n - 1), torch.arange(1, n)], 1), pair)
    # Z = 1^T diag(e^-u0) M_0 diag(e^-u1) M_1 ... with M_k = exp(-pair_k)
    v = torch.exp(-unary[0])
    for k in range(n - 1):
        v = (v @ torch.exp(-pair[k])) * torch.exp(-unary[k + 1])
    for chunk in (27, 3**9):
        assert exact_inference(m, chunk_size=chunk).log_z == pytest.approx(float(torch.log(v.sum())), abs=1e-11)


@pytest.mark.parametrize("chunk", [1, 4, 50, 10**6])
def test_enumeration_matches_brute_force(chunk):
    m = random_model()
    e, log_z, p, marg = brute_force(m)
    r = exact_inference(m, chunk_size=chunk)
    assert r.log_z == pytest.approx(float(log_z), abs=1e-11)
    torch.testing.assert_close(r.marginals, marg, atol=1e-12, rtol=0)
    assert r.expected_energy == pytest.approx(float((p * e).sum()), abs=1e-11)
    assert r.entropy == pytest.approx(float(-(p * p.log()).sum()), abs=1e-11)
    torch.testing.assert_close(log_probability_table(m), -e - log_z)
    torch.testing.assert_close(m.energy(configurations(m.num_nodes, m.num_labels)), e)


def test_float32_and_device_kept():
    m = random_model(dtype=torch.float32)
    r = exact_inference(m)
    assert r.marginals.dtype == torch.float32 and r.marginals.device == m.device
    assert r.log_z == pytest.approx(exact_inference(m.to(dtype=torch.float64)).log_z, abs=1e-4)


def test_kl_from_table_and_samples():
    m = random_model(n=5, c=2, num_edges=6, seed=1)
    e, log_z, p, _ = brute_force(m)
    assert kl_from_table(m, p) == pytest.approx(0.0, abs=1e-11)
    q = torch.softmax(torch.randn(p.numel(), generator=torch.Generator().manual_seed(2)), 0)
    direct = float((q * (q.log() - (-e - log_z))).sum())
    assert kl_from_table(m, q) == pytest.approx(direct, abs=1e-11)
    # integer samples holding exactly counts proportional to q_hat: plug-in is the table's entropy
    counts = torch.tensor([3, 1, 0, 2] + [0] * 28)
    samples = torch.repeat_interleave(configurations(5, 2), counts, dim=0)
    q_hat = counts.double() / counts.sum()
    direct = float((q_hat[counts > 0] * (q_hat[counts > 0].log() + e[counts > 0] + log_z)).sum())
    assert kl_from_samples(m, samples, bias_correction=False) == pytest.approx(direct, abs=1e-11)
    assert kl_from_samples(m, samples) == pytest.approx(direct - 2 / 12, abs=1e-11)  # (s-1)/(2m) = 2/12


def test_size_limit_and_bad_input():
    with pytest.raises(ValueError, match="above the limit"):
        exact_inference(ising_grid(5, 5))
    with pytest.raises(ValueError, match="above the limit"):
        exact_inference(random_model(n=6, c=3), max_configurations=100)
    m = random_model(n=3, c=2, num_edges=2)
    with pytest.raises(ValueError, match="shape"):
        kl_from_table(m, torch.ones(7) / 7)
    with pytest.raises(ValueError, match="sum to 1"):
        kl_from_table(m, torch.ones(8))


def test_table1_constants_and_potts():
    r = exact_inference(ising_grid())
    assert r.log_z == pytest.approx(5.1362, abs=5e-5)
    assert r.expected_energy == pytest.approx(-1.5395, abs=5e-5)
    assert r.entropy == pytest.approx(3.5967, abs=5e-5)
    # symmetry of the boundary field: p(node left, class 0) = p(node right, class 1)
    marg = r.marginals.reshape(3, 8, 2)
    torch.testing.assert_close(marg[:, :, 0], marg.flip(1)[:, :, 1])
    pm = potts_grid(torch.zeros(2, 2, 3), 1.0)
    assert pm.num_edges == 4 and pm.grid_shape == (2, 2)
