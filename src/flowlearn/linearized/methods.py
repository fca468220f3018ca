r"""How the linearized flow's :math:`V_T` and its gradient are computed: small frozen strategy objects.

Closed forms (paper 000, Thm 3.8; the gradient never builds an autograd graph through the solver):

* :class:`LowRank` -- Krylov forward :math:`T\beta Q_m\varphi(TH_m)e_1` and the Krylov +
  Benzi--Simoncini low-rank backward (3.47); any size, memory :math:`2(m+1)IJ`;
* :class:`Exact` -- dense :math:`e^{\mathcal A}` and one exponential of size :math:`2(IJ+1)`; small problems.

References and baselines (autograd differentiates the computation of :math:`V_T`, Sect. 3.4):

* :class:`DenseAutograd` -- plain autograd through dense ``torch.linalg.matrix_exp`` of :math:`\mathcal A`;
* :class:`AutodiffEuler` -- autograd through explicit Euler steps (3.49);
* :class:`AutodiffExpint` -- autograd through Krylov exponential integration.

Every object is a frozen dataclass: its fields are its whole identity (checkpoints, reports), and
``name`` is the short name the command line uses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from .._checks import UserInputError, UserTypeError, check_int, check_positive
from ..solvers import Euler, ExponentialIntegrator, FixedStepIntegrator

__all__ = ["METHODS", "AutodiffEuler", "AutodiffExpint", "DenseAutograd", "Exact", "LowRank", "method_from_name"]


@dataclass(frozen=True)
class LowRank:
    """Krylov + Benzi--Simoncini low-rank closed form (3.47): any size, memory :math:`2(m+1)IJ`.

    Parameters
    ----------
    m : int
        Krylov dimension of the forward and adjoint spaces.
    rank : int
        SVD truncation of :math:`X` (3.46).
    recompute_forward : bool
        Drop the forward basis after the forward pass and rebuild it in the backward pass (memory
        :math:`(m+1)IJ` between the passes, ``m`` more products with :math:`A`; the same result).
    """

    m: int = 10
    rank: int = 1
    recompute_forward: bool = False
    name: ClassVar[str] = "lowrank"

    def __post_init__(self):
        check_int("m", self.m, minimum=1)
        check_int("rank", self.rank, minimum=1)
        if not isinstance(self.recompute_forward, bool):
            raise UserTypeError(f"recompute_forward must be a bool, got {self.recompute_forward!r}")


@dataclass(frozen=True)
class Exact:
    """Dense closed form: :math:`e^{\\mathcal A}` and one exponential of size :math:`2(IJ+1)`;
    ``I * J <= MAX_EXACT_SIZE`` (2500)."""

    name: ClassVar[str] = "exact"


@dataclass(frozen=True)
class DenseAutograd:
    """Reference, not a closed form: plain autograd through dense ``torch.linalg.matrix_exp`` of
    :math:`\\mathcal A`; small problems, for tests."""

    name: ClassVar[str] = "dense-autograd"


@dataclass(frozen=True)
class AutodiffEuler:
    """Baseline: autograd through explicit Euler with step ``step_size`` (``ceil(T / step_size)`` steps)."""

    step_size: float = 0.1
    name: ClassVar[str] = "autodiff-euler"

    def __post_init__(self):
        check_positive("step_size", self.step_size)

    def integrator(self):
        return FixedStepIntegrator(Euler(), self.step_size)


@dataclass(frozen=True)
class AutodiffExpint:
    """Baseline: autograd through Krylov exponential integration (dimension ``m``, ``substeps`` sub-steps)."""

    m: int = 10
    substeps: int = 1
    name: ClassVar[str] = "autodiff-expint"

    def __post_init__(self):
        check_int("m", self.m, minimum=1)
        check_int("substeps", self.substeps, minimum=1)

    def integrator(self):
        return ExponentialIntegrator(m=self.m, substeps=self.substeps)


METHODS = (LowRank, Exact, DenseAutograd, AutodiffEuler, AutodiffExpint)


def method_from_name(name: str, **options):
    """The method object whose ``name`` is ``name``, built with ``options`` (the command line's mapping).

    Raises
    ------
    UserInputError
        For an unknown name or an option the method does not have (listing the valid ones).
    """
    by_name = {cls.name: cls for cls in METHODS}
    if name not in by_name:
        raise UserInputError(f"method must be one of {sorted(by_name)}, got {name!r}")
    cls = by_name[name]
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UserInputError(f"method {name!r} has no option(s) {unknown}; valid options: {valid}")
    return cls(**options)
