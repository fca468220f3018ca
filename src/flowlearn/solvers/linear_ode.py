r"""Strategies for the affine linear ODE :math:`\dot y = Ay + b`, :math:`y(0) = 0`.

Both strategies return a :class:`LinearODEResult`, so callers (the linearized
assignment flow, its parameter learning) switch between exponential integration
and time stepping without changing anything else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .._checks import UserTypeError, check_int, check_positive
from .base import LinearODEResult, Solver, integrate, linear_grid
from .krylov import krylov_phi
from .runge_kutta import Euler

__all__ = ["ExponentialIntegrator", "FixedStepIntegrator", "LinearODEResult"]


@dataclass(frozen=True)
class ExponentialIntegrator:
    r"""Exact-in-time exponential integration :math:`y(t) = t\varphi(tA)b` by Krylov subspaces.

    Parameters
    ----------
    m : int
        Krylov dimension per sub-step.
    rtol : float
        Tolerance of the adaptive sub-stepping.
    substeps : int, optional
        Fixed number of sub-steps instead of error control.
    """

    m: int = 10
    rtol: float = 1e-8
    substeps: int | None = None

    def __post_init__(self):
        check_int("m", self.m, minimum=1)
        check_positive("rtol", self.rtol)
        if self.substeps is not None:
            check_int("substeps", self.substeps, minimum=1)

    def solve(self, matvec: Callable, b: torch.Tensor, t: float) -> LinearODEResult:
        r"""Compute :math:`y(t) = t\varphi(tA)b` with :func:`~flowlearn.solvers.krylov_phi`.

        Parameters
        ----------
        matvec : callable
            :math:`y \mapsto Ay`, acting on tensors shaped like ``b``.
        b : tensor
            Constant term :math:`b` (any shape, e.g. ``(I, J)``).
        t : float
            End time.

        Returns
        -------
        LinearODEResult
            ``y`` shaped like ``b``, with the Krylov error estimate.
        """
        return krylov_phi(matvec, b, t, m=self.m, rtol=self.rtol, substeps=self.substeps)


@dataclass(frozen=True)
class FixedStepIntegrator:
    """Time stepping with a Runge--Kutta ``solver`` (default explicit Euler) and step ``step_size``.

    The number of steps is ``ceil(t / step_size)`` on an equally spaced grid.
    """

    solver: Solver = field(default_factory=Euler)
    step_size: float = 0.1

    def __post_init__(self):
        check_positive("step_size", self.step_size)
        if not isinstance(self.solver, Solver):
            raise UserTypeError(f"solver must be a flowlearn.solvers.Solver, got {type(self.solver).__name__}")

    def solve(self, matvec: Callable, b: torch.Tensor, t: float) -> LinearODEResult:
        r"""Integrate :math:`\dot y = Ay + b`, :math:`y(0) = 0`, from 0 to ``t`` with fixed steps.

        Parameters
        ----------
        matvec : callable
            :math:`y \mapsto Ay`, acting on tensors shaped like ``b``.
        b : tensor
            Constant term :math:`b` (any shape, e.g. ``(I, J)``).
        t : float > 0
            End time.

        Returns
        -------
        LinearODEResult
            ``y`` shaped like ``b``; ``error_estimate`` is NaN and ``stats["matvecs"]`` the number of
            field evaluations.
        """
        t = check_positive("t", t)
        steps = max(1, math.ceil(t / self.step_size - 1e-9))
        sol = integrate(lambda _t, y: matvec(y) + b, torch.zeros_like(b), linear_grid(t, steps), self.solver)
        stats = dict(sol.stats, matvecs=sol.stats["nfev"])
        return LinearODEResult(y=sol.y, error_estimate=float("nan"), status=sol.status, stats=stats)
