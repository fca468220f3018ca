"""Column transfer matrix against enumeration and against pgmpy's exact variable elimination."""

import math

import numpy as np
import pytest
import torch

from flowlearn._checks import UserInputError, UserTypeError
from flowlearn.pgm import (
    PairwiseModel,
    exact_inference,
    exact_inference_auto,
    grid_edges,
    ising_grid,
    potts_grid,
    transfer_matrix_inference,
)
from flowlearn.pgm.enumeration import ExactResult
from flowlearn.pgm.transfer import TransferMatrixResult, transfer_matrix_feasible

pytestmark = pytest.mark.usefixtures("one_thread")

TOL = 1e-10


def assert_same(a: ExactResult, b: ExactResult, tol: float = TOL) -> None:
    assert abs(a.log_z - b.log_z) < tol
    assert abs(a.expected_energy - b.expected_energy) < tol
    assert abs(a.entropy - b.entropy) < tol
    assert float((a.marginals - b.marginals).abs().max()) < tol
    assert a.num_configurations == b.num_configurations


def random_potts(rows, cols, c=3, coupling=0.8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return potts_grid(torch.randn(rows, cols, c, generator=g, dtype=torch.float64), coupling)


def random_tables_grid(rows, cols, c=3, seed=0):
    """Per-edge asymmetric tables, edges stored in both orientations, one edge removed."""
    g = torch.Generator().manual_seed(seed)
    edges = grid_edges(rows, cols)[1:]
    edges = torch.stack([e if k % 2 else e.flip(0) for k, e in enumerate(edges)])
    return PairwiseModel(torch.randn(rows * cols, c, generator=g, dtype=torch.float64), edges,
                         torch.randn(edges.shape[0], c, c, generator=g, dtype=torch.float64), grid_shape=(rows, cols))


@pytest.mark.parametrize("model", [
    ising_grid(3, 8, field=3.0, coupling=2.1, dtype=torch.float64),   # Table 1 (2**24 configurations)
    ising_grid(4, 5, field=2.0, coupling=1.5, dtype=torch.float64),
    ising_grid(5, 3, field=2.0, coupling=1.5, dtype=torch.float64),   # rows > cols: slices are grid rows
], ids=["3x8", "4x5", "5x3"])
def test_ising_equals_enumeration(model):
    tm = transfer_matrix_inference(model)
    assert isinstance(tm, TransferMatrixResult) and isinstance(tm, ExactResult)
    assert tm.width == min(model.grid_shape) and tm.transposed == (model.grid_shape[0] > model.grid_shape[1])
    assert_same(tm, exact_inference(model))


def test_table1_values():
    tm = transfer_matrix_inference(ising_grid(3, 8, field=3.0, coupling=2.1, dtype=torch.float64))
    assert tm.log_z == pytest.approx(5.1362, abs=1e-4)
    assert tm.expected_energy == pytest.approx(-1.5395, abs=1e-4)
    assert tm.entropy == pytest.approx(3.5967, abs=1e-4)


@pytest.mark.parametrize("shape", [(3, 4), (4, 3), (1, 7), (2, 2)])
def test_potts_random_fields_equals_enumeration(shape):
    model = random_potts(*shape, c=3, seed=sum(shape))
    assert_same(transfer_matrix_inference(model), exact_inference(model))


@pytest.mark.parametrize("shape", [(3, 4), (4, 3)])
def test_asymmetric_per_edge_tables_equal_enumeration(shape):
    model = random_tables_grid(*shape, c=3, seed=1)
    assert_same(transfer_matrix_inference(model), exact_inference(model))


def test_float32_model_keeps_dtype():
    model = ising_grid(3, 4, field=1.0, coupling=0.5, dtype=torch.float32)
    tm = transfer_matrix_inference(model)
    assert tm.marginals.dtype == torch.float32
    assert_same(tm, exact_inference(model.to(dtype=torch.float64)), tol=1e-6)


def test_12x12_reference_values():
    """The issue's reference numbers for the 12 x 12 Ising grid, field 2, coupling 1."""
    tm = transfer_matrix_inference(ising_grid(12, 12, field=2.0, coupling=1.0, dtype=torch.float64))
    assert tm.log_z == pytest.approx(25.998, abs=5e-4)
    assert tm.expected_energy == pytest.approx(11.880, abs=5e-4)
    assert tm.entropy == pytest.approx(37.878, abs=5e-4)
    assert tm.entropy == pytest.approx(tm.log_z + tm.expected_energy, abs=1e-12)
    m = tm.marginals
    assert float((m.sum(1) - 1).abs().max()) < 1e-12
    # mirror symmetry: swapping left/right columns swaps the two labels
    grid = m[:, 0].reshape(12, 12)
    assert torch.allclose(grid, 1 - grid.flip(1), atol=1e-12)
    assert torch.allclose(grid, grid.flip(0), atol=1e-12)


def test_limits_and_bad_input():
    with pytest.raises(UserInputError, match=r"max_column_states = 65536"):
        transfer_matrix_inference(ising_grid(17, 17))
    with pytest.raises(UserInputError, match=r"3\*\*4 column states"):
        transfer_matrix_inference(random_potts(4, 6), max_column_states=64)
    with pytest.raises(UserInputError, match="max_message_bytes"):
        transfer_matrix_inference(ising_grid(4, 5), max_message_bytes=100)
    with pytest.raises(UserInputError, match="grid_shape must be set"):
        transfer_matrix_inference(PairwiseModel(torch.zeros(3, 2), [[0, 1], [1, 2]], torch.eye(2)))
    diag = PairwiseModel(torch.zeros(4, 2), [[0, 3]], torch.eye(2), grid_shape=(2, 2))
    with pytest.raises(UserInputError, match=r"4-neighbours .* got edge \(0, 3\)"):
        transfer_matrix_inference(diag)
    assert not transfer_matrix_feasible(diag)
    with pytest.raises(UserTypeError, match="model must be a PairwiseModel"):
        transfer_matrix_inference("ising")
    with pytest.raises(UserTypeError, match="max_column_states must be an integer"):
        transfer_matrix_inference(ising_grid(2, 2), max_column_states=2.5)


def test_auto_picks_a_method():
    grid = ising_grid(12, 12, field=2.0, coupling=1.0)
    assert isinstance(exact_inference_auto(grid), TransferMatrixResult)
    no_grid = PairwiseModel(torch.randn(6, 3), [[0, 1], [1, 2], [2, 0], [3, 4]], torch.randn(3, 3))
    res = exact_inference_auto(no_grid)
    assert not isinstance(res, TransferMatrixResult)
    assert_same(exact_inference_auto(random_potts(3, 4), method="enumeration"),
                exact_inference_auto(random_potts(3, 4), method="transfer"))
    with pytest.raises(UserInputError, match="too large for exact inference"):
        exact_inference_auto(random_potts(12, 12))
    with pytest.raises(UserInputError, match="method must be one of"):
        exact_inference_auto(grid, method="bp")


# ---------------------------------------------------------------------------- pgmpy
def _pgmpy_network(model: PairwiseModel):
    pgmpy_models = pytest.importorskip("pgmpy.models")
    from pgmpy.factors.discrete import DiscreteFactor

    c = model.num_labels
    names = [f"x{i}" for i in range(model.num_nodes)]
    net = pgmpy_models.DiscreteMarkovNetwork()
    net.add_nodes_from(names)
    net.add_edges_from([(names[i], names[j]) for i, j in model.edges.tolist()])
    unary = model.unary.double().numpy()
    pairwise = model.pairwise.double().numpy()
    factors = [DiscreteFactor([names[i]], [c], np.exp(-unary[i])) for i in range(model.num_nodes)]
    factors += [DiscreteFactor([names[i], names[j]], [c, c], np.exp(-pairwise[e]).reshape(-1))
                for e, (i, j) in enumerate(model.edges.tolist())]
    net.add_factors(*factors)
    return net, names


def _pgmpy_marginal(model: PairwiseModel, node: int, order: str = "MinFill"):
    """Unnormalised marginal of one node by pgmpy's variable elimination: (Z, p (c,))."""
    from pgmpy.inference import VariableElimination

    net, names = _pgmpy_network(model)
    q = VariableElimination(net).query([names[node]], elimination_order=order, show_progress=False)
    values = np.asarray(q.values, dtype=np.float64)
    return float(values.sum()), values / values.sum()


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("model", [random_potts(3, 4, c=3, seed=3), random_tables_grid(4, 3, c=3, seed=2)],
                         ids=["potts3x4", "tables4x3"])
def test_potts_equals_pgmpy_variable_elimination(model):
    pytest.importorskip("pgmpy")
    from pgmpy.inference import VariableElimination

    tm = transfer_matrix_inference(model)
    net, names = _pgmpy_network(model)
    ve = VariableElimination(net)
    for i in range(model.num_nodes):
        q = ve.query([names[i]], elimination_order="MinFill", show_progress=False)
        values = np.asarray(q.values, dtype=np.float64)
        assert abs(math.log(values.sum()) - tm.log_z) < TOL
        assert np.abs(values / values.sum() - tm.marginals[i].numpy()).max() < TOL


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_12x12_equals_pgmpy():
    """Beyond enumeration: log Z and corner/centre marginals by VE; E by a central difference of log Z."""
    pytest.importorskip("pgmpy")
    model = ising_grid(12, 12, field=2.0, coupling=1.0, dtype=torch.float64)
    tm = transfer_matrix_inference(model)
    for node in (0, 11, 66, 143):
        z, p = _pgmpy_marginal(model, node, order="greedy")
        assert abs(math.log(z) - tm.log_z) < 1e-9
        assert np.abs(p - tm.marginals[node].numpy()).max() < 1e-9
    # <E> = -d/db log Z(b E) at b = 1, by pgmpy at b = 1 +- h (error O(h^2) ~ 1e-8)
    h = 1e-4
    logs = []
    for b in (1 + h, 1 - h):
        scaled = PairwiseModel(b * model.unary, model.edges, b * model.pairwise, grid_shape=model.grid_shape)
        logs.append(math.log(_pgmpy_marginal(scaled, 0, order="greedy")[0]))
    energy = -(logs[0] - logs[1]) / (2 * h)
    assert abs(energy - tm.expected_energy) < 1e-6
