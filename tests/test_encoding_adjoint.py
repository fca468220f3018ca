"""Training gradients: full (discrete) adjoint vs unrolled autograd vs finite differences; approx at z*."""

import pytest
import torch
from torch import nn

from flowlearn.encoding import GradientFlowEncoder
from flowlearn.solvers.amd import AMD


pytestmark = pytest.mark.usefixtures("one_thread")


def _decoder(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 8), nn.ELU(), nn.Linear(8, 10), nn.Sigmoid())


def _grad(enc, y):
    enc.decoder.zero_grad()
    tl = enc.training_loss(y)
    tl.loss.backward()
    return torch.cat([p.grad.flatten() for p in enc.decoder.parameters()]), tl


def _rel(a, b):
    return float((a - b).norm() / b.norm())


CASES = [
    dict(solver="euler", grid="linear", steps=12, t1=8.0),
    dict(solver="euler", grid="log", steps=12, t1=20.0, alpha_decay=True),
    dict(solver="rk4", grid="log", steps=10, t1=30.0),
    dict(solver="rk4", grid="linear", steps=8, t1=10.0, alpha_decay=True),
    dict(solver="nesterov", grid="log", steps=10, t1=10.0),
    dict(solver="amd"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_full_adjoint_equals_unrolled_autograd(case, loss):
    dec = _decoder()
    y = torch.rand(5, 10)
    amd = AMD(max_steps=25)
    g_full, tl_full = _grad(GradientFlowEncoder(dec, 3, loss=loss, adjoint="full", amd=amd, **case), y)
    g_unr, tl_unr = _grad(GradientFlowEncoder(dec, 3, loss=loss, adjoint="unrolled", amd=amd, **case), y)
    g_apx, _ = _grad(GradientFlowEncoder(dec, 3, loss=loss, adjoint="approx", amd=amd, **case), y)
    assert torch.allclose(tl_full.loss, tl_unr.loss, rtol=1e-12)
    assert _rel(g_full, g_unr) < 1e-6
    assert _rel(g_apx, g_unr) > 1e-3        # the dz*/dtheta term matters away from a stationary point


@pytest.mark.parametrize("case", CASES[:5], ids=lambda c: "-".join(str(v) for v in c.values()))
def test_full_adjoint_matches_finite_differences(case):
    dec = _decoder(1)
    y = torch.rand(4, 10)
    enc = GradientFlowEncoder(dec, 3, adjoint="full", **case)
    g, _ = _grad(enc, y)
    params = list(dec.parameters())
    flat = torch.cat([p.detach().flatten() for p in params])
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        direction = torch.randn(flat.shape, generator=gen)
        h = 1e-6
        vals = []
        for sign in (1, -1):
            offset = 0
            with torch.no_grad():
                for p in params:
                    n = p.numel()
                    p.copy_((flat[offset:offset + n] + sign * h * direction[offset:offset + n]).view_as(p))
                    offset += n
            vals.append(float(enc.training_loss(y).loss.detach()))
        fd = (vals[0] - vals[1]) / (2 * h)
        assert abs(fd - float(g @ direction)) < 1e-7 * max(1.0, abs(fd))
    with torch.no_grad():
        offset = 0
        for p in params:
            p.copy_(flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()


def test_approx_equals_exact_at_converged_stationary_point():
    # linear decoder + MSE: the flow converges to the least-squares code z* where grad_z l = 0
    torch.manual_seed(2)
    dec = nn.Linear(3, 6)
    with torch.no_grad():
        dec.weight.copy_(torch.randn(6, 3) + 2 * torch.eye(6, 3))
    y = torch.randn(4, 6)
    lam = torch.linalg.eigvalsh(2.0 / 6 * dec.weight.T @ dec.weight).detach()
    t1 = 40.0 / float(lam[0])                        # e^{-40}: converged to double precision
    kw = dict(loss="mse", solver="rk4", grid="linear", t1=t1, steps=int(t1 * float(lam[-1])) + 1)
    g_full, tl = _grad(GradientFlowEncoder(dec, 3, adjoint="full", **kw), y)
    g_apx, _ = _grad(GradientFlowEncoder(dec, 3, adjoint="approx", **kw), y)
    # check the code really is stationary
    z = tl.encoding.z.requires_grad_(True)
    (gz,) = torch.autograd.grad(((dec(z) - y) ** 2).mean(1).sum(), z)
    assert float(gz.abs().max()) < 1e-10
    assert _rel(g_apx, g_full) < 1e-6
    # and the envelope theorem: d/dtheta min_z l = partial_theta l(z*) computed from the closed-form z*
    W, b = dec.weight, dec.bias
    zstar = torch.linalg.solve(W.T @ W, W.T @ (y - b).T).T.detach()
    dec.zero_grad()
    ((dec(zstar) - y) ** 2).mean(1).mean().backward()
    g_env = torch.cat([p.grad.flatten() for p in dec.parameters()])
    assert _rel(g_full, g_env) < 1e-6


def test_full_adjoint_amd_float32_runs_and_is_close():
    dec = _decoder().float()
    y = torch.rand(6, 10, dtype=torch.float32)
    g_full, tl = _grad(GradientFlowEncoder(dec, 3, adjoint="full", amd=AMD(max_steps=15)), y)
    g_unr, _ = _grad(GradientFlowEncoder(dec, 3, adjoint="unrolled", amd=AMD(max_steps=15)), y)
    assert g_full.dtype == torch.float32 and tl.encoding.z.dtype == torch.float32
    assert _rel(g_full, g_unr) < 1e-4
