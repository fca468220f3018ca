r"""Baselines of Sect. 3.4: automatic differentiation through a numerical integrator.

``autodiff-euler`` back-propagates through explicit Euler steps (3.49) of size ``step_size``;
``autodiff-expint`` through the Krylov exponential integrator (Arnoldi + small ``expm``) of
:mod:`flowlearn.solvers`.  Both differentiate the same loss, with respect to the patches, through
:math:`A(\Omega)` and :math:`B(\Omega)` (PyTorch keeps every intermediate of the integrator alive).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch

from ..._checks import check_int, check_positive
from ...solvers import Euler, ExponentialIntegrator, FixedStepIntegrator
from ..losses import LearningProblem
from .base import DataGradient, GradientMethod

__all__ = ["AutodiffEulerGradient", "AutodiffExpintGradient"]


class _AutodiffGradient(GradientMethod):
    @abc.abstractmethod
    def _integrator(self):
        """The integrator whose steps autograd differentiates."""

    def data_gradient(self, problem: LearningProblem, patches: torch.Tensor) -> DataGradient:
        p = patches.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            system = problem.system(p)
            sol = self._integrator().solve(system.matvec, system.B, problem.T)
            loss = problem.data_loss(sol.y)
            (grad,) = torch.autograd.grad(loss, p)
        stats = {k: v for k, v in sol.stats.items() if isinstance(v, (int, float))}
        return DataGradient(tangent=sol.y.detach(), grad_patches=grad, status=sol.status, stats=stats)


@dataclass(frozen=True)
class AutodiffEulerGradient(_AutodiffGradient):
    """Autograd through explicit Euler with step ``step_size`` (``ceil(T / step_size)`` steps)."""

    step_size: float = 0.1
    name = "autodiff-euler"

    def __post_init__(self):
        check_positive("step_size", self.step_size)

    def _integrator(self):
        return FixedStepIntegrator(Euler(), self.step_size)


@dataclass(frozen=True)
class AutodiffExpintGradient(_AutodiffGradient):
    """Autograd through Krylov exponential integration (dimension ``m``, ``substeps`` equal sub-steps)."""

    m: int = 10
    substeps: int = 1
    name = "autodiff-expint"

    def __post_init__(self):
        check_int("m", self.m, minimum=1)
        check_int("substeps", self.substeps, minimum=1)

    def _integrator(self):
        return ExponentialIntegrator(m=self.m, substeps=self.substeps)
