"""The common interface of all gradient methods: ``method(problem, patches) -> GradientResult``."""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ..._checks import UserTypeError
from ..losses import LearningProblem

__all__ = ["GradientMethod", "GradientResult", "DataGradient"]


@dataclass
class DataGradient:
    """What a method computes: the tangent ``V_T`` and the gradient of ``f_L`` w.r.t. the patches."""

    tangent: torch.Tensor
    grad_patches: torch.Tensor
    status: str = "success"
    stats: dict = field(default_factory=dict)


@dataclass
class GradientResult:
    r"""Loss and Euclidean gradient :math:`\partial_p\mathcal L` with respect to the weight patches.

    Attributes
    ----------
    loss : float
        :math:`\mathcal L = f_L + \mathcal R`.
    data_loss, regularization : float
        The two parts.
    grad : tensor ``(I, N)``
        Euclidean gradient with respect to the patches (the Riemannian one is
        ``flowlearn.geometry.egrad2rgrad(patches, grad)``).
    tangent : tensor ``(I, J)``
        :math:`V_T` as computed by the method.
    method : str
        Registry name of the method.
    status : str
        ``"success"`` or the status of the underlying solver.
    stats : dict
        ``seconds`` and method-specific counters (Krylov dimensions, singular values, steps).
    """

    loss: float
    data_loss: float
    regularization: float
    grad: torch.Tensor
    tangent: torch.Tensor
    method: str
    status: str = "success"
    stats: dict = field(default_factory=dict)


class GradientMethod(abc.ABC):
    r"""Computes :math:`\mathcal L(\Omega)` and :math:`\partial_p\mathcal L` for a :class:`LearningProblem`.

    Subclasses are frozen dataclasses holding their hyperparameters and implement
    :meth:`data_gradient` (loss part only); the regularizer is added here.
    """

    name: ClassVar[str] = ""

    @abc.abstractmethod
    def data_gradient(self, problem: LearningProblem, patches: torch.Tensor) -> DataGradient:
        """``V_T`` and the gradient of the data loss ``f_L(V_T)`` with respect to the patches."""

    def __call__(self, problem: LearningProblem, patches) -> GradientResult:
        if not isinstance(problem, LearningProblem):
            raise UserTypeError(f"problem must be a LearningProblem, got {type(problem).__name__}")
        p = problem.check_patches(patches).detach()
        start = time.perf_counter()
        out = self.data_gradient(problem, p)
        with torch.no_grad():
            data_loss = float(problem.data_loss(out.tangent))
            reg = float(problem.regularizer(p)) if problem.tau > 0 else 0.0
            grad = out.grad_patches.detach()
            if problem.tau > 0:
                grad = grad + problem.regularizer_grad(p)
        stats = dict(out.stats, seconds=time.perf_counter() - start)
        return GradientResult(loss=data_loss + reg, data_loss=data_loss, regularization=reg, grad=grad,
                              tangent=out.tangent.detach(), method=self.name, status=out.status, stats=stats)
