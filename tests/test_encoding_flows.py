"""Gradient-flow encoders on a linear decoder with MSE: the flows are linear ODEs with closed forms."""

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import scipy.special
import torch
from torch import nn

from flowlearn.encoding import GradientFlowEncoder
from flowlearn.encoding.flows import reconstruction_loss
from flowlearn.solvers import FixedGrid
from flowlearn.solvers.amd import AMD


pytestmark = pytest.mark.usefixtures("one_thread")


def _linear_problem(d=3, P=6, B=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    dec = nn.Linear(d, P)
    with torch.no_grad():
        dec.weight.copy_(torch.randn(P, d, generator=g))
        dec.bias.copy_(torch.randn(P, generator=g))
    y = torch.randn(B, P, generator=g)
    # l(z) = |W z + b - y|^2 / P: gradient (2/P) W^T (W z + b - y) = M (z - z*)
    W, b = dec.weight.detach(), dec.bias.detach()
    M = 2.0 / P * W.T @ W
    zstar = torch.linalg.solve(W.T @ W, W.T @ (y - b).T).T
    return dec, y, M, zstar


def _gradient_flow_closed_form(M, zstar, t, alpha_tau=None):
    s = t if alpha_tau is None else alpha_tau / 2 * (1 - math.exp(-2 * t / alpha_tau))   # int_0^t alpha
    E = torch.as_tensor(scipy.linalg.expm(-s * M.numpy()))
    return zstar + (E @ (0 - zstar).T).T


@pytest.mark.parametrize("solver, order", [("euler", 1), ("rk4", 4)])
@pytest.mark.parametrize("alpha_decay", [False, True])
def test_fixed_grid_gradient_flow_matches_closed_form_with_order(solver, order, alpha_decay):
    dec, y, M, zstar = _linear_problem()
    t1 = 2.0
    exact = _gradient_flow_closed_form(M, zstar, t1, t1 if alpha_decay else None)
    errs = []
    for steps in (40, 80):
        enc = GradientFlowEncoder(dec, 3, loss="mse", solver=solver, t1=t1, steps=steps, grid="linear",
                                  alpha_decay=alpha_decay)
        errs.append(float((enc.encode(y).z - exact).abs().max()))
    assert errs[1] < (2e-2 if order == 1 else 1e-8)
    assert 2 ** order * 0.8 < errs[0] / errs[1] < 2 ** order * 1.25


def test_log_grid_rk4_accurate():
    dec, y, M, zstar = _linear_problem()
    enc = GradientFlowEncoder(dec, 3, loss="mse", solver="rk4", t1=5.0, steps=200, grid="log")
    res = enc.encode(y)
    assert torch.allclose(res.z, _gradient_flow_closed_form(M, zstar, 5.0), atol=1e-7)
    assert res.status == ["success"] * 4
    assert torch.equal(res.steps, torch.full((4,), 200))
    assert torch.equal(res.decoder_evals, torch.full((4,), 4 * 200 + 1))
    assert torch.allclose(res.loss, reconstruction_loss(dec(res.z), y, "mse"))


def test_nesterov_matches_bessel_closed_form():
    # z'' + 3/t z' + M (z - z*) = 0, z(0) = z'(0) = 0:  z - z* = V diag(2 J1(sqrt(l) t) / (sqrt(l) t)) V^T (-z*)
    dec, y, M, zstar = _linear_problem()
    t1 = 4.0
    lam, V = np.linalg.eigh(M.numpy())
    r = np.sqrt(lam) * t1
    K = V @ np.diag(2 * scipy.special.j1(r) / r) @ V.T
    exact = zstar + torch.as_tensor((K @ (-zstar.numpy()).T).T)
    enc = GradientFlowEncoder(dec, 3, loss="mse", solver="nesterov", t1=t1, steps=600, grid="log", nesterov_eps=1e-7)
    assert torch.allclose(enc.encode(y).z, exact, atol=1e-5)


def test_nesterov_matches_scipy_with_eps():
    dec, y, M, zstar = _linear_problem()
    eps, t1 = 1e-2, 3.0
    Mn, zs = M.numpy(), zstar.numpy()

    def rhs(t, s):
        z, v = s[:3], s[3:]
        return np.concatenate([v, -3 / (t + eps) * v - Mn @ (z - zb)])

    ref = []
    for zb in zs:
        sol = scipy.integrate.solve_ivp(rhs, (0, t1), np.zeros(6), method="DOP853", rtol=1e-12, atol=1e-12)
        ref.append(sol.y[:3, -1])
    enc = GradientFlowEncoder(dec, 3, loss="mse", solver="nesterov", t1=t1, steps=300, grid="log", nesterov_eps=eps)
    assert np.allclose(enc.encode(y).z.numpy(), np.array(ref), atol=1e-8)


def test_amd_reaches_the_minimiser():
    dec, y, M, zstar = _linear_problem()
    enc = GradientFlowEncoder(dec, 3, loss="mse", solver="amd", amd=AMD(max_steps=3000, flat_rtol=0, gtol=1e-11))
    res = enc.encode(y)
    assert torch.allclose(res.z, zstar, atol=1e-9)
    assert bool((res.decoder_evals == (res.steps + 1) + enc.amd.minimize(
        lambda z, rows: reconstruction_loss(dec(z), y[rows], "mse"), torch.zeros(4, 3), indexed=True).loss_evals).all())


def test_reconstruction_losses_formulas():
    x = torch.rand(3, 2, 5) * 0.98 + 0.01
    y = torch.rand(3, 10)
    bce = -(y * torch.log(x.reshape(3, -1)) + (1 - y) * torch.log(1 - x.reshape(3, -1))).mean(1)
    assert torch.allclose(reconstruction_loss(x, y, "bce"), bce, rtol=1e-12)
    assert torch.allclose(reconstruction_loss(x, y, "mse"), ((x.reshape(3, -1) - y) ** 2).mean(1), rtol=1e-12)
    with pytest.raises(ValueError, match="loss must be one of"):
        reconstruction_loss(x, y, "bec")
    with pytest.raises(ValueError, match="same samples"):
        reconstruction_loss(x, y[:, :4], "mse")


def test_time_grids():
    g = FixedGrid(t1=2.0, steps=4, spacing="linear").times()
    assert torch.allclose(g, torch.tensor([0, 0.5, 1, 1.5, 2.0]))
    g = FixedGrid(t1=10.0, steps=5, spacing="log").times()
    assert g.shape == (6,) and g[0] == 0 and abs(float(g[1]) - 0.01) < 1e-12 and abs(float(g[-1]) - 10) < 1e-12
    ratios = g[2:] / g[1:-1]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios))
    with pytest.raises(ValueError, match="spacing must be one of"):
        FixedGrid(t1=1.0, steps=3, spacing="logarithmic")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("solver", ["amd", "euler", "rk4", "nesterov"])
def test_dtype_and_device_preserved(dtype, solver):
    dec = nn.Sequential(nn.Linear(2, 5), nn.Sigmoid()).to(dtype)
    y = torch.rand(3, 5, dtype=dtype)
    res = GradientFlowEncoder(dec, 2, solver=solver, **({} if solver == "amd" else {"steps": 5})).encode(y)
    assert res.z.dtype == dtype and res.loss.dtype == dtype and res.z.device == y.device
    assert res.z.shape == (3, 2) and len(res.status) == 3


def test_encoder_validation():
    dec = nn.Linear(2, 4)
    with pytest.raises(ValueError, match="solver must be one of"):
        GradientFlowEncoder(dec, 2, solver="rk5")
    with pytest.raises(ValueError, match="adjoint must be one of"):
        GradientFlowEncoder(dec, 2, adjoint="exact")
    with pytest.raises(ValueError, match="loss must be one of"):
        GradientFlowEncoder(dec, 2, loss="l1")
    with pytest.raises(ValueError, match="alpha_decay"):
        GradientFlowEncoder(dec, 2, solver="amd", alpha_decay=True)
    with pytest.raises(TypeError, match="decoder must be"):
        GradientFlowEncoder(lambda z: z, 2)
    with pytest.raises(TypeError, match="floating tensor"):
        GradientFlowEncoder(dec, 2).encode(torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="y must be finite"):
        GradientFlowEncoder(dec, 2).encode(torch.full((3, 4), math.nan))
