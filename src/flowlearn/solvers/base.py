r"""One integrate entry point for fixed-grid ODE solvers, the explicit Runge--Kutta steps, and the
fixed-grid flow strategies.

A solver implements only its :meth:`Solver.step`; :func:`integrate` owns the time loop, early termination,
saving and statistics.  On the tangent-space parametrisation :math:`W = \exp_{W_0}(V)` of a flow on the
assignment manifold, explicit Euler *is* the geometric Euler scheme :math:`W \leftarrow \exp_W(h\,S(W))`.

The strategies :class:`FixedGrid` and :class:`Nesterov` are small typed objects that say *how* a flow is
integrated, passed like the per-sample minimisers :class:`~flowlearn.solvers.amd.AMD` and
:class:`~flowlearn.solvers.bb.BB` (e.g. ``solver=`` of :class:`flowlearn.encoding.GradientFlowEncoder`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from .._checks import UserInputError, UserTypeError, check_choice, check_finite, check_int, check_positive
from ..status import Status

__all__ = ["RK4", "SPACINGS", "Euler", "ExplicitRungeKutta", "FixedGrid", "Heun", "LinearODEResult", "Nesterov",
           "Solution", "Solver", "Status", "integrate", "linear_grid", "log_grid"]

VectorField = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Solution:
    """Result of :func:`integrate`: the final time ``t`` reached and the state ``y`` there, the saved states
    ``ys`` (n, *y.shape) when ``save=True``, the ``status`` and ``stats`` (``steps`` and ``nfev``, the
    vector-field evaluations)."""

    t: float
    y: torch.Tensor
    status: Status
    stats: dict = field(default_factory=dict)
    ys: torch.Tensor | None = None


@dataclass
class LinearODEResult:
    """Solution :math:`y(t)` of :math:`\\dot y = Ay + b`, :math:`y(0)=0` (or :math:`y_0`), with the Krylov
    a-posteriori ``error_estimate`` (NaN for time stepping), the solver's ``status`` and work ``stats``."""

    y: torch.Tensor
    error_estimate: float
    status: Status
    stats: dict = field(default_factory=dict)


class Solver(abc.ABC):
    """A one-step method ``y_{n+1} = step(f, t_n, y_n, h)`` for ``dy/dt = f(t, y)``."""

    #: classical order of accuracy
    order: int = 1
    #: vector-field evaluations per step
    stages: int = 1
    #: hyperparameters (none: a step method is identified by its type; see flowlearn.engine.spec)
    hparams: ClassVar[dict] = {}

    @abc.abstractmethod
    def step(self, f: VectorField, t: float, y: torch.Tensor, h: float) -> torch.Tensor:
        """Advance ``y`` from ``t`` to ``t + h``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _set_checked(obj, *, positive=(), nonnegative=(), ints=None) -> None:
    """Check and store normalised fields of the frozen dataclass ``obj`` (``ints``: ``{name: minimum}``)."""
    for name in positive:
        object.__setattr__(obj, name, check_positive(name, getattr(obj, name)))
    for name in nonnegative:
        object.__setattr__(obj, name, check_positive(name, getattr(obj, name), strict=False))
    for name, minimum in (ints or {}).items():
        object.__setattr__(obj, name, check_int(name, getattr(obj, name), minimum=minimum))


def linear_grid(t1: float, steps: int, *, dtype=torch.float64) -> torch.Tensor:
    """``steps + 1`` equally spaced times from 0 to ``t1``."""
    steps = check_int("steps", steps, minimum=1)
    return torch.linspace(0.0, check_positive("t1", t1), steps + 1, dtype=dtype)


def log_grid(t1: float, steps: int, *, dtype=torch.float64) -> torch.Tensor:
    """``0`` followed by ``steps`` log-spaced times from ``t1/10**3`` to ``t1``: small steps early, for
    gradient flows that move fast at first and slowly later."""
    steps = check_int("steps", steps, minimum=1)
    t1 = check_positive("t1", t1)
    pos = torch.logspace(torch.log10(torch.tensor(t1 * 1e-3)).item(), torch.log10(torch.tensor(t1)).item(),
                         steps, dtype=dtype)
    return torch.cat([torch.zeros(1, dtype=dtype), pos])


def integrate(f: VectorField, y0: torch.Tensor, ts: torch.Tensor, solver: Solver, *,
              terminate: Callable[[float, torch.Tensor], bool] | None = None, save: bool = False) -> Solution:
    """Integrate ``dy/dt = f(t, y)`` from ``y0`` at ``ts[0]`` over the increasing time grid ``ts``, one
    ``solver`` step per interval.

    Parameters
    ----------
    terminate : callable ``(t, y) -> bool``, optional
        Stop early (status ``TERMINATED``) as soon as it returns ``True`` after a step; if it never fires,
        the status is ``MAX_STEPS``.
    save : bool
        Keep every state on the grid (``Solution.ys``).
    """
    if not isinstance(solver, Solver):
        raise UserTypeError(f"solver must be a flowlearn.solvers.Solver, got {type(solver).__name__}")
    ts = torch.as_tensor(ts, dtype=torch.float64).reshape(-1)
    if ts.numel() < 2:
        raise UserInputError(f"ts must hold at least 2 times, got {ts.numel()}")
    if not bool((ts[1:] > ts[:-1]).all()):
        raise UserInputError("ts must be strictly increasing")
    check_finite("y0", y0)
    times = ts.tolist()
    y = y0
    saved = [y0] if save else None
    status = Status.SUCCESS if terminate is None else Status.MAX_STEPS
    for n in range(1, len(times)):
        y = solver.step(f, times[n - 1], y, times[n] - times[n - 1])
        if save:
            saved.append(y)
        if not bool(torch.isfinite(y).all()):
            status = Status.NONFINITE
            break
        if terminate is not None and terminate(times[n], y):
            status = Status.TERMINATED
            break
    return Solution(t=times[n], y=y, status=status, stats={"steps": n, "nfev": n * solver.stages},
                    ys=torch.stack(saved) if save else None)


class ExplicitRungeKutta(Solver):
    r"""Explicit Runge--Kutta step with Butcher tableau ``(a, b, c)`` (``a`` lower triangular, row ``i`` of
    length ``i``; weights ``b`` and nodes ``c`` of length ``s``) and classical ``order``:

    .. math:: k_s = f\big(t + c_s h,\; y + h\sum_{r<s} a_{sr} k_r\big),\qquad
              y_{n+1} = y_n + h\sum_s b_s k_s .
    """

    def __init__(self, a: Sequence[Sequence[float]], b: Sequence[float], c: Sequence[float], order: int):
        s = len(b)
        if len(c) != s or len(a) != s or any(len(row) != i for i, row in enumerate(a)):
            raise UserInputError(f"Butcher tableau must have len(b) == len(c) == len(a) = s and row i of a of "
                                 f"length i, got s={s}, len(c)={len(c)}, row lengths {[len(r) for r in a]}")
        self.a = [list(map(float, row)) for row in a]
        self.b, self.c = list(map(float, b)), list(map(float, c))
        self.order, self.stages = int(order), s

    def step(self, f, t, y, h):
        ks: list[torch.Tensor] = []
        for s in range(self.stages):
            ks.append(f(t + self.c[s] * h, _add_stages(y, h, self.a[s], ks)))
        return _add_stages(y, h, self.b, ks)


def _add_stages(y, h, coeffs, ks):
    """:math:`y + h\\sum_r c_r k_r`, skipping zero coefficients."""
    for coeff, k in zip(coeffs, ks):
        if coeff != 0.0:
            y = y + (h * coeff) * k
    return y


class Euler(ExplicitRungeKutta):
    """Explicit Euler, order 1; on the tangent-space parametrisation, the *geometric Euler* scheme."""

    def __init__(self):
        super().__init__(a=[[]], b=[1.0], c=[0.0], order=1)


class Heun(ExplicitRungeKutta):
    """Heun's method (explicit trapezoidal rule), order 2."""

    def __init__(self):
        super().__init__(a=[[], [1.0]], b=[0.5, 0.5], c=[0.0, 1.0], order=2)


class RK4(ExplicitRungeKutta):
    """The classical fourth-order Runge--Kutta method."""

    def __init__(self):
        super().__init__(a=[[], [0.5], [0.0, 0.5], [0.0, 0.0, 1.0]], b=[1 / 6, 1 / 3, 1 / 3, 1 / 6],
                         c=[0.0, 0.5, 0.5, 1.0], order=4)


SPACINGS = ("log", "linear")


@dataclass(frozen=True)
class FixedGrid:
    r"""Integrate a flow with ``method`` (``RK4()``, ``Euler()``, ``Heun()``) on a fixed grid of ``steps``
    intervals over ``[0, t1]``: ``spacing="log"`` is 0 then ``steps`` log-spaced times from ``t1/1000`` to
    ``t1`` (see :func:`log_grid`); ``alpha_decay`` scales the gradient flow :math:`\dot z = -\alpha(t)\nabla l(z)`
    by :math:`\alpha(t) = e^{-2t/t_1}` (paper 002, App. A.2).  ``FixedGrid(Euler(), t1=150, steps=50,
    spacing="linear")`` is plain gradient descent with step 3 (the auto-decoder)."""

    method: ExplicitRungeKutta = field(default_factory=RK4)
    t1: float = 1000.0
    steps: int = 60
    spacing: str = "log"
    alpha_decay: bool = False

    def __post_init__(self):
        if not isinstance(self.method, ExplicitRungeKutta):
            raise UserTypeError("method must be an explicit Runge-Kutta step such as flowlearn.solvers.RK4(), "
                                f"got {type(self.method).__name__}")
        _set_checked(self, positive=("t1",), ints={"steps": 1})
        check_choice("spacing", self.spacing, SPACINGS)
        if not isinstance(self.alpha_decay, bool):
            raise UserTypeError(f"alpha_decay must be True or False, got {self.alpha_decay!r}")

    @property
    def name(self) -> str:
        """Short name of the step method (``"rk4"``, ``"euler"``, ...)."""
        return type(self.method).__name__.lower()

    def times(self, *, dtype=torch.float64) -> torch.Tensor:
        """The grid, ``steps + 1`` times from 0 to ``t1``."""
        if self.spacing == "linear" or self.steps == 1:
            return linear_grid(self.t1, self.steps, dtype=dtype)
        return log_grid(self.t1, self.steps, dtype=dtype)


@dataclass(frozen=True)
class Nesterov:
    r"""The accelerated flow of Su, Boyd & Candès (2016), :math:`\ddot z + \frac{3}{t+\epsilon}\dot z + \nabla l = 0`,
    :math:`z(0)=z_0`, :math:`\dot z(0)=0`, as the first-order system on :math:`(z, v)` integrated on ``grid``
    (without ``alpha_decay``; its time scales like the square root of the gradient flow's); ``eps`` keeps the
    friction :math:`3/(t+\epsilon)` finite at :math:`t = 0`."""

    grid: FixedGrid = field(default_factory=lambda: FixedGrid(t1=100.0))
    eps: float = 1e-2

    def __post_init__(self):
        if not isinstance(self.grid, FixedGrid):
            raise UserTypeError(f"grid must be a flowlearn.solvers.FixedGrid, got {type(self.grid).__name__}")
        if self.grid.alpha_decay:
            raise UserInputError("alpha_decay applies to the gradient flow only, got a Nesterov grid with "
                                 "alpha_decay=True")
        object.__setattr__(self, "eps", check_positive("eps", self.eps))

    name = "nesterov"
