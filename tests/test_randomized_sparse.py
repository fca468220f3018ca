"""Sparse interaction on the model's graph: equality with the dense node Omega restricted to the same
pattern, O(B |E|) memory, degree-scaled drive, memory-budget sampling chunks, bad input."""

import pytest
import torch

from flowlearn._checks import UserInputError, UserTypeError
from flowlearn.engine import spec
from flowlearn.pgm import grid_edges, potts_grid
from flowlearn.randomized import (
    LabelInteraction,
    NodeInteraction,
    RandomizedAssignmentFlow,
    SparseInteraction,
    TrainingConfig,
    train_randomized_flow,
)
from flowlearn.randomized.sampling import per_sample_bytes

D = torch.float64


def _pair(rows=3, cols=4, c=3, **kw):
    edges = grid_edges(rows, cols)
    n = rows * cols
    dense = RandomizedAssignmentFlow(n, c, dtype=D, **kw)
    sparse = RandomizedAssignmentFlow(n, c, interaction=SparseInteraction(edges), dtype=D, **kw)
    return dense, sparse, n


def _restricted_z(z, edges, n):
    """Dense Z (B, n, n) -> the sparse layout (Z_ij on edges, Z_ji, Z_ii)."""
    i, j = edges[:, 0], edges[:, 1]
    k = torch.arange(n)
    return torch.cat([z[:, i, j], z[:, j, i], z[:, k, k]], 1)


def test_sparse_flow_equals_dense_omega_restricted_to_the_pattern():
    dense, sparse, n = _pair()
    g = torch.Generator().manual_seed(0)
    B = 6
    z = torch.randn(B, n, n, generator=g, dtype=D) * 0.7 + 0.05
    mask = torch.eye(n, dtype=D)
    mask[sparse.edges[:, 0], sparse.edges[:, 1]] = 1
    mask[sparse.edges[:, 1], sparse.edges[:, 0]] = 1
    omega_dense = dense.interaction.omega(dense, z) * mask  # dense Omega restricted to edges + self loops
    omega_sparse = sparse.interaction.omega(sparse, _restricted_z(z, sparse.edges, n))
    assert omega_sparse.shape == (B, sparse.interaction.num_edges + n)
    log_s0 = torch.log_softmax(torch.randn(B, n, 3, generator=g, dtype=D), -1)
    a = dense.integrate(omega_dense, log_s0)
    b = sparse.integrate(omega_sparse, log_s0)
    assert float((a - b).abs().max()) < 1e-12
    # also the right-hand side for arbitrary S
    s = torch.rand(B, n, 3, generator=g, dtype=D)
    assert float((dense.interaction.apply(dense, omega_dense, s) - sparse.interaction.apply(sparse, omega_sparse, s)).abs().max()) < 1e-12


def test_sparse_pattern_of_any_graph_deduplicates_and_drops_self_loops():
    edges = torch.tensor([[0, 1], [1, 0], [2, 2], [3, 0], [0, 1], [4, 2]])
    f = RandomizedAssignmentFlow(5, 2, interaction=SparseInteraction(edges), init_noise=0.5, dtype=D)
    assert f.edges.tolist() == [[0, 1], [0, 3], [2, 4]] == f.interaction.edges.tolist()
    assert SparseInteraction(edges) == SparseInteraction(edges.flip(1)) != SparseInteraction(edges[:2])
    assert spec(SparseInteraction(edges))["edges"] == spec(f.interaction.edges)  # by fingerprint
    assert f.interaction_mean.shape == (2 * 3 + 5,)
    x = f.sample(7, torch.Generator().manual_seed(1))
    assert x.shape == (7, 5)


def test_sparse_memory_is_linear_in_edges():
    rows = cols = 40  # n = 1600
    edges = grid_edges(rows, cols)
    n = rows * cols
    f = RandomizedAssignmentFlow(n, 2, interaction=SparseInteraction(edges), init_noise=0.5)
    m = edges.shape[0]
    assert f.interaction_mean.numel() == 2 * m + n
    omega = f.sample_interaction(4, torch.Generator().manual_seed(0))
    assert omega.numel() == 4 * (m + n)  # O(B |E|), against B n^2 = 10.2 M for the dense node Omega
    # memory-budget chunks: one chunk stays within the budget, and sparse chunks are far larger than dense ones
    dense = RandomizedAssignmentFlow(n, 2)
    budget = 2**26
    for flow in (f, dense):
        chunk = flow.sampling_chunk_size(budget)
        assert chunk * per_sample_bytes(flow.interaction_mean.numel(), n, 2, 4) <= budget or chunk == 1
    assert f.sampling_chunk_size(budget) > 100 * dense.sampling_chunk_size(budget)
    assert f.sample(300, torch.Generator().manual_seed(0)).shape == (300, n)


def test_default_chunk_of_a_dense_flow_is_small_for_many_nodes():
    f = RandomizedAssignmentFlow(144, 2)
    assert f.sampling_chunk_size() * 3 * 144 * 144 * 4 <= f.sampling_memory
    assert RandomizedAssignmentFlow(24, 2).sampling_chunk_size() > 10_000


@pytest.mark.parametrize("interaction", ["node", "sparse"])
def test_degree_scaled_drive_does_not_grow_with_n(interaction):
    def drive(side, scale):
        edges = grid_edges(side, side)
        inter = SparseInteraction(edges, drive_scale=scale) if interaction == "sparse" else NodeInteraction(scale)
        f = RandomizedAssignmentFlow(side * side, 2, interaction=inter, dtype=D)
        omega = f.sample_interaction(64, torch.Generator().manual_seed(0))
        s = torch.full((64, side * side, 2), 0.5, dtype=D)
        # off-diagonal drive: (Omega S) minus the diagonal part, at the interior nodes' mean
        full = f.interaction.apply(f, omega, s)
        diag = omega[:, -side * side:] if interaction == "sparse" else torch.diagonal(omega, dim1=1, dim2=2)
        return float((full[..., 0] - diag * 0.5).detach().mean() / 0.5)

    small, large = drive(4, "degree"), drive(12, "degree")
    assert large == pytest.approx(small, rel=0.25)
    if interaction == "node":  # unscaled dense drive grows like n - 1
        assert drive(12, "none") > 5 * drive(4, "none")


def test_sparse_flow_trains():
    model = potts_grid(torch.randn(3, 3, 2, generator=torch.Generator().manual_seed(0), dtype=D), 1.0)
    f = RandomizedAssignmentFlow(9, 2, interaction=SparseInteraction(model.edges, drive_scale="degree"),
                                 init_noise=0.5, initial_logits=-0.5 * model.unary, dtype=D)
    res = train_randomized_flow(f, model, TrainingConfig(iterations=5, batch_size=16, entropy_estimator="score",
                                                         random_roundings=2), show_progress=False)
    assert len(res.history) == 5 and all(torch.isfinite(p).all() for p in f.parameters())


@pytest.mark.parametrize("make,error,match", [
    (lambda: SparseInteraction(torch.tensor([[0.0, 1.0]])), UserTypeError, "integer"),
    (lambda: SparseInteraction(torch.tensor([[0, 9]])), UserInputError, "index nodes"),
    (lambda: SparseInteraction(torch.tensor([[0, -1]])), UserInputError, "index nodes"),
    (lambda: SparseInteraction(torch.tensor([0, 1, 2])), UserInputError, "shape"),
    (lambda: SparseInteraction([[0, 1]], drive_scale="sqrt"), UserInputError, "drive_scale"),
    (lambda: LabelInteraction(drive_scale="degree"), TypeError, "drive_scale"),
    (lambda: NodeInteraction(drive_scale="sqrt"), UserInputError, "drive_scale"),
])
def test_bad_sparse_input(make, error, match):
    with pytest.raises(error, match=match):
        RandomizedAssignmentFlow(4, 2, interaction=make())
    with pytest.raises(UserInputError, match="sampling_memory"):
        RandomizedAssignmentFlow(4, 2, sampling_memory=0)
