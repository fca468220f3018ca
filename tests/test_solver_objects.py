"""Typed solver objects for gradient flow encoding: FixedGrid and Nesterov (flowlearn.solvers)."""

import pytest
import torch
from torch import nn

from flowlearn._checks import UserInputError, UserTypeError
from flowlearn.encoding import GradientFlowEncoder, TrainConfig
from flowlearn.solvers import AMD, BB, RK4, Euler, FixedGrid, Heun, Nesterov


def _decoder(seed=0, d=3, p=12):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 8), nn.Tanh(), nn.Linear(8, p), nn.Sigmoid()).double()


def _data(seed=1, b=4, p=12):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, p, generator=g, dtype=torch.float64)


def test_euler_fixed_grid_is_gradient_descent():
    """FixedGrid(Euler(), t1 = n h, n steps, linear) = n plain gradient steps of size h on each code."""
    dec, y = _decoder(), _data()
    h, n = 3.0, 7
    enc = GradientFlowEncoder(dec, 3, solver=FixedGrid(Euler(), t1=h * n, steps=n, spacing="linear"))
    z = torch.zeros(4, 3, dtype=torch.float64)
    for _ in range(n):
        zz = z.clone().requires_grad_(True)
        loss = nn.functional.binary_cross_entropy(dec(zz), y, reduction="none").mean(1).sum()
        (g,) = torch.autograd.grad(loss, zz)
        z = z - h * g
    torch.testing.assert_close(enc.encode(y).z, z, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("name", "obj", "shortcuts"), [
    ("euler", FixedGrid(Euler(), t1=150.0, steps=50, spacing="linear"), {"t1": 150.0, "steps": 50, "grid": "linear"}),
    ("rk4", FixedGrid(RK4(), t1=200.0, steps=30, alpha_decay=True), {"t1": 200.0, "steps": 30, "alpha_decay": True}),
    ("nesterov", Nesterov(FixedGrid(RK4(), t1=50.0, steps=40), eps=0.1), {"t1": 50.0, "steps": 40, "nesterov_eps": 0.1}),
    ("amd", AMD(max_steps=9), {"amd": AMD(max_steps=9)}),
    ("bb", BB(max_steps=9), {"bb": BB(max_steps=9)}),
])
def test_object_equals_name_with_shortcuts(name, obj, shortcuts):
    dec, y = _decoder(), _data()
    a = GradientFlowEncoder(dec, 3, solver=obj).encode(y)
    b = GradientFlowEncoder(dec, 3, solver=name, **shortcuts).encode(y)
    assert GradientFlowEncoder(dec, 3, solver=obj).solver == name
    torch.testing.assert_close(a.z, b.z, rtol=0, atol=0)
    torch.testing.assert_close(a.loss, b.loss, rtol=0, atol=0)


@pytest.mark.parametrize("solver", [FixedGrid(RK4(), t1=20.0, steps=12), FixedGrid(Heun(), t1=20.0, steps=12),
                                    Nesterov(FixedGrid(RK4(), t1=10.0, steps=12))])
def test_full_adjoint_equals_unrolled_through_objects(solver):
    """The discrete adjoint of a solver object equals backprop through its steps (float64)."""
    y = _data()
    grads = {}
    for adjoint in ("full", "unrolled"):
        dec = _decoder()
        enc = GradientFlowEncoder(dec, 3, solver=solver, adjoint=adjoint)
        enc.training_loss(y).loss.backward()
        grads[adjoint] = torch.cat([p.grad.reshape(-1) for p in dec.parameters()])
    assert grads["full"].norm() > 1e-6
    torch.testing.assert_close(grads["full"], grads["unrolled"], rtol=1e-9, atol=1e-12)


def test_grid_times():
    g = FixedGrid(t1=100.0, steps=4, spacing="log").times()
    assert g[0] == 0 and g[-1] == pytest.approx(100.0) and g[1] == pytest.approx(0.1)
    assert torch.all(g[1:] > g[:-1])
    torch.testing.assert_close(FixedGrid(t1=4.0, steps=4, spacing="linear").times(),
                               torch.arange(5, dtype=torch.float64))


def test_train_config_builds_objects():
    assert isinstance(TrainConfig(solver="amd").solver_object(), AMD)
    s = TrainConfig(solver="euler", t1=150.0, steps=50, grid="linear").solver_object()
    assert isinstance(s, FixedGrid) and isinstance(s.method, Euler) and (s.t1, s.steps, s.spacing) == (150.0, 50, "linear")
    assert isinstance(TrainConfig(solver="nesterov").solver_object(), Nesterov)


def test_bad_solver_objects_are_refused():
    dec = _decoder()
    with pytest.raises(UserTypeError, match="method must be an explicit Runge-Kutta step"):
        FixedGrid("rk4")
    with pytest.raises(UserInputError, match="t1"):
        FixedGrid(t1=-1.0)
    with pytest.raises(UserInputError, match="spacing"):
        FixedGrid(spacing="cosine")
    with pytest.raises(UserInputError, match="alpha_decay"):
        Nesterov(FixedGrid(alpha_decay=True))
    with pytest.raises(UserTypeError, match="grid must be"):
        Nesterov(grid=RK4())
    with pytest.raises(UserInputError, match="steps must be set inside the solver object"):
        GradientFlowEncoder(dec, 3, solver=FixedGrid(), steps=5)
    with pytest.raises(UserInputError, match="steps set the fixed-grid solvers, not solver='amd'"):
        GradientFlowEncoder(dec, 3, solver="amd", steps=5)
    with pytest.raises(UserInputError, match="nesterov_eps sets solver='nesterov'"):
        GradientFlowEncoder(dec, 3, solver="rk4", nesterov_eps=0.1)
    with pytest.raises(UserTypeError, match="solver must be one of"):
        GradientFlowEncoder(dec, 3, solver=Euler())
