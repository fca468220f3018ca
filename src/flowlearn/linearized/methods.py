r"""How the linearized flow's :math:`V_T` and its gradient are computed: small frozen strategy objects.

Closed forms (paper 000, Thm 3.8; no autograd graph through the solver): :class:`LowRank`, :class:`Exact`.
References and baselines (autograd through the computation of :math:`V_T`, Sect. 3.4): :class:`DenseAutograd`,
:class:`AutodiffEuler`, :class:`AutodiffExpint`.  The fields of a method are its whole identity (checkpoints,
reports); ``name`` is the short name of the command line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from .._checks import UserInputError, UserTypeError, check_int, check_positive
from ..solvers import Euler, ExponentialIntegrator, FixedStepIntegrator

__all__ = ["METHODS", "AutodiffEuler", "AutodiffExpint", "DenseAutograd", "Exact", "LowRank", "check_method",
           "method_from_name"]


@dataclass(frozen=True)
class LowRank:
    """Krylov + Benzi--Simoncini low-rank closed form (3.47): any size, memory :math:`2(m+1)IJ`.

    ``m``: Krylov dimension of the forward and adjoint spaces; ``rank``: SVD truncation of :math:`X` (3.46);
    ``recompute_forward``: drop the forward basis after the forward pass and rebuild it in the backward (memory
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


def check_method(method):
    """``method`` if it is an instance of one of :data:`METHODS`, else a one-line ``UserTypeError``."""
    if not isinstance(method, METHODS):
        raise UserTypeError(f"method must be one of {[m.__name__ for m in METHODS]}, got {method!r}")
    return method


def method_from_name(name: str, **options):
    """The method object whose ``name`` is ``name``, built with ``options`` (the command line's mapping); a
    ``UserInputError`` for an unknown name or option."""
    by_name = {cls.name: cls for cls in METHODS}
    if name not in by_name:
        raise UserInputError(f"method must be one of {sorted(by_name)}, got {name!r}")
    cls = by_name[name]
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UserInputError(f"method {name!r} has no option(s) {unknown}; valid options: {valid}")
    return cls(**options)
