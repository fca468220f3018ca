"""Full and linearized assignment flows: exactness, agreement, errors."""

import numpy as np
import pytest
import torch

from flowlearn.data import make_voronoi
from flowlearn.evaluation import label_error
from flowlearn.graphs import GridWeights
from flowlearn.labeling import AssignmentFlow, LinearizedAssignmentFlow, LinearizedFlowSequence, distance_matrix, label
from flowlearn.linearized import LinearizedSystem
from flowlearn.solvers import RK4, integrate
from flowlearn.solvers.base import linear_grid


def _blocks():
    """A noiseless piecewise-constant image with 3 labels in stripes at least 4 pixels wide.

    (Uniform averaging erodes convex corners -- a corner pixel sees a majority of the other
    label -- so exactness is asserted on straight boundaries; see the Voronoi test for corners.)
    """
    lab = np.zeros((16, 20), dtype=np.int64)
    lab[:, 5:9] = 1
    lab[:, 9:15] = 2
    protos = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    return protos[lab], lab, protos


@pytest.mark.parametrize("flow", ["full", "linearized"])
@pytest.mark.parametrize("k", [3, 5])
def test_noiseless_image_is_labelled_exactly(flow, k):
    img, lab, protos = _blocks()
    res = label(img, protos, flow=flow, neighbourhood=k, rho=0.5)
    assert np.array_equal(res.label_image(16, 20).numpy(), lab)
    if flow == "full":
        assert res.status == "terminated" and res.mean_entropy < 1e-3


def test_clean_voronoi_nearly_exact_and_noisy_improves_on_rounding():
    v = make_voronoi(64, scenario="colors", seed=1)
    res = label(v.clean, v.prototypes)
    assert label_error(res.label_image(64, 64).numpy(), v.labels) < 1.0
    noisy = label(v.image, v.prototypes)
    assert label_error(noisy.label_image(64, 64).numpy(), v.labels) < 10.0


def _full_flow_tangent(om, Ds, T, steps=100):
    flow = AssignmentFlow(om, rho=1.0)
    return integrate(flow.vector_field(Ds), torch.zeros_like(Ds), linear_grid(T, steps), RK4()).y


def test_linearized_agrees_with_full_flow_for_small_T():
    g = torch.Generator().manual_seed(0)
    H, W, J = 8, 9, 4
    D = 2 * torch.rand(H * W, J, generator=g)
    om = GridWeights(H, W, 3)
    rel = []
    for T in (0.4, 0.2, 0.1):
        V_full = _full_flow_tangent(om, D, T)
        V_lin = LinearizedAssignmentFlow(om, rho=1.0, T=T).run(D).tangent
        rel.append(float((V_full - V_lin).norm() / V_full.norm()))
    # the linearization error is O(T^2) in V, i.e. O(T) relative to |V| = O(T)
    assert rel[2] < 1e-2 and rel[1] / rel[2] > 1.7 and rel[0] / rel[1] > 1.7, rel


def test_sequence_of_linearized_flows_approaches_full_flow():
    g = torch.Generator().manual_seed(1)
    H, W, J = 7, 7, 3
    D = 2 * torch.rand(H * W, J, generator=g)
    om = GridWeights(H, W, 3)
    T = 2.0
    V_full = _full_flow_tangent(om, D, T, steps=200)
    errs = []
    for n in (2, 4, 8):
        seq = LinearizedFlowSequence(om, rho=1.0, interval=T / n, max_intervals=n, entropy_tol=1e-12).run(D)
        errs.append(float((seq.tangent - V_full).norm() / V_full.norm()))
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.02, errs
    # one interval is exactly the linearized flow
    one = LinearizedFlowSequence(om, rho=1.0, interval=T, max_intervals=1).run(D).tangent
    torch.testing.assert_close(one, LinearizedAssignmentFlow(om, rho=1.0, T=T).run(D).tangent)


def test_linearized_system_dense_matches_operators():
    g = torch.Generator().manual_seed(2)
    om = GridWeights(5, 4, 3)
    sysm = LinearizedSystem.at(om, torch.rand(20, 3, generator=g))
    A = sysm.dense()
    x = torch.randn(20, 3, generator=g)
    torch.testing.assert_close(sysm.matvec(x).reshape(-1), A @ x.reshape(-1))
    torch.testing.assert_close(sysm.rmatvec(x).reshape(-1), A.T @ x.reshape(-1))
    # A maps into the tangent space, B lies in it
    assert float(sysm.matvec(x).sum(-1).abs().max()) < 1e-12 and float(sysm.B.sum(-1).abs().max()) < 1e-12


def test_higher_order_geometric_scheme_converges_faster():
    g = torch.Generator().manual_seed(3)
    D = 2 * torch.rand(36, 3, generator=g)
    om = GridWeights(6, 6, 3)
    ref = _full_flow_tangent(om, D, 1.0, steps=200)
    f = AssignmentFlow(om).vector_field(D)
    from flowlearn.solvers import Euler
    e_euler = float((integrate(f, torch.zeros_like(D), linear_grid(1.0, 10), Euler()).y - ref).norm())
    e_rk4 = float((integrate(f, torch.zeros_like(D), linear_grid(1.0, 10), RK4()).y - ref).norm())
    assert e_rk4 < 1e-3 * e_euler


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_kept(dtype):
    img, lab, protos = _blocks()
    res = label(torch.tensor(img, dtype=dtype), protos, flow="linearized")
    assert res.assignment.dtype == dtype and res.tangent.dtype == dtype


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(flow="ful"), ValueError, r"flow must be one of \['full', 'linearized'\], got 'ful'"),
        (dict(rho=0.0), ValueError, "rho must be finite and > 0, got 0.0"),
        (dict(rho=-1.0), ValueError, "rho must be finite and > 0"),
        (dict(neighbourhood=4), ValueError, "neighbourhood must be odd, got 4"),
        (dict(T=-1.0, flow="linearized"), ValueError, "T must be finite and > 0"),
        (dict(prototypes=np.zeros((3, 3))), ValueError,
         r"prototypes must have the features' dimension C=2, got shape \(3, 3\)"),
        (dict(prototypes=np.zeros((1, 2))), ValueError, "at least 2 labels"),
        (dict(image=np.full((4, 4, 2), np.nan)), ValueError, "image must be finite"),
        (dict(image=np.zeros((2, 2, 2, 2))), ValueError, "image must be 2 or 3-dimensional"),
        (dict(patches=-np.ones((320, 9)) / 9), ValueError, "patches must be non-negative"),
    ],
)
def test_label_errors(kwargs, exc, match):
    img, lab, protos = _blocks()
    args = dict(image=img, prototypes=protos)
    args.update({k: kwargs.pop(k) for k in list(kwargs) if k in args})
    with pytest.raises(exc, match=match):
        label(args["image"], args["prototypes"], **kwargs)


def test_distance_errors():
    om = GridWeights(2, 2)
    with pytest.raises(ValueError, match="distances must be finite"):
        AssignmentFlow(om).run(torch.tensor([[0.0, float("inf")]] * 4))
    with pytest.raises(ValueError, match="non-negative"):
        LinearizedAssignmentFlow(om).run(-torch.ones(4, 2))
    with pytest.raises(ValueError, match=r"one row per node of the weights \(4\), got shape \(5, 2\)"):
        AssignmentFlow(om).run(torch.ones(5, 2))
    with pytest.raises(TypeError, match="integrator must be"):
        LinearizedAssignmentFlow(om, integrator="krylov")
    with pytest.raises(ValueError, match="metric must be one of"):
        distance_matrix(np.zeros((4, 2)), np.zeros((2, 2)), metric="cosine")
