r"""Fixed-grid flow strategies: small typed objects that say *how* a flow is integrated.

They sit beside the per-sample minimisers :class:`~flowlearn.solvers.amd.AMD` and
:class:`~flowlearn.solvers.bb.BB` and are passed the same way (e.g. ``solver=`` of
:class:`flowlearn.encoding.GradientFlowEncoder`); they hold settings only and know nothing of
what the flow is used for.

* :class:`FixedGrid` -- an explicit Runge--Kutta method (``Euler()``, ``RK4()``, ...) on a fixed
  grid of ``steps`` intervals over :math:`[0, t_1]`, ``"log"`` (small steps first) or ``"linear"``
  spaced; optionally the decaying scale :math:`\alpha(t) = e^{-2t/t_1}` on the gradient flow
  :math:`\dot z = -\alpha(t)\nabla l(z)`.  ``FixedGrid(Euler(), t1=150, steps=50, spacing="linear")``
  is plain gradient descent with step 3 (the auto-decoder).
* :class:`Nesterov` -- the accelerated flow of Su, Boyd & Candès (2016),
  :math:`\ddot z + \frac{3}{t+\epsilon}\dot z + \nabla l(z) = 0`, :math:`z(0)=z_0`, :math:`\dot z(0)=0`,
  as the first-order system on :math:`(z, v)`, integrated by a :class:`FixedGrid` (default RK4,
  log grid to :math:`t_1 = 100`: its time scales like the square root of the gradient flow's).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .._checks import (
    UserInputError,
    UserTypeError,
    check_choice,
    check_positive,
)
from .base import _set_checked, linear_grid, log_grid
from .runge_kutta import RK4, ExplicitRungeKutta

__all__ = ["SPACINGS", "FixedGrid", "Nesterov"]

SPACINGS = ("log", "linear")


@dataclass(frozen=True)
class FixedGrid:
    """Integrate a flow with ``method`` on a fixed time grid (see module docstring).

    Parameters
    ----------
    method : ExplicitRungeKutta
        The step (``RK4()`` default, ``Euler()``, ``Heun()``).
    t1 : float > 0
        Final time.
    steps : int >= 1
        Number of intervals.
    spacing : {"log", "linear"}
        ``"log"``: 0 then ``steps`` log-spaced times from ``t1/1000`` to ``t1``.
    alpha_decay : bool
        Scale the gradient flow by :math:`e^{-2t/t_1}` (paper 002, App. A.2).
    """

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
        """The grid, ``steps + 1`` times from 0 to ``t1`` (float64 by default)."""
        if self.spacing == "linear" or self.steps == 1:
            return linear_grid(self.t1, self.steps, dtype=dtype)
        return log_grid(self.t1, self.steps, dtype=dtype)

    def __repr__(self) -> str:
        return (f"FixedGrid({type(self.method).__name__}(), t1={self.t1}, steps={self.steps}, "
                f"spacing={self.spacing!r}, alpha_decay={self.alpha_decay})")


@dataclass(frozen=True)
class Nesterov:
    r"""The Nesterov flow :math:`\ddot z + \frac{3}{t+\epsilon}\dot z + \nabla l = 0` on a fixed grid.

    Parameters
    ----------
    grid : FixedGrid
        How the first-order system is integrated (default RK4, 60 log-spaced steps to ``t1 = 100``);
        ``alpha_decay`` must be False.
    eps : float > 0
        :math:`\epsilon`, which keeps the friction :math:`3/(t+\epsilon)` finite at :math:`t = 0`.
    """

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
