r"""Krylov exponential integration of affine linear ODEs, and the two strategies for them.

Solves :math:`\dot y = Ay + b`, :math:`y(0)=y_0`, whose solution is

.. math:: y(t) = y_0 + t\,\varphi(tA)\,(Ay_0 + b),\qquad \varphi(z) = \frac{e^z-1}{z},

using only products with :math:`A` (a callable), never a matrix.  Arnoldi on :math:`(A, v)` gives an
orthonormal basis :math:`Q_m` of :math:`\mathcal{K}_m(A, v)` and :math:`H_m = Q_m^\top A Q_m`, and

.. math:: t\,\varphi(tA)v \approx t\,\|v\|\,Q_m\,\varphi(tH_m)e_1 ,

where :math:`\varphi(tH_m)e_1` (and :math:`\varphi_2(tH_m)e_1` for the error estimate) are read off the
exponential of the augmented matrix
:math:`\begin{psmallmatrix} tH_m & e_1 & 0\\ 0&0&1\\ 0&0&0\end{psmallmatrix}`
(Higham, *Functions of Matrices*, 2008, §10.7.4; Sidje, Expokit, 1998).  The a-posteriori estimate of
the error of one step of length :math:`\tau` is (Saad 1992, Thm 5.1)

.. math:: \mathrm{err} \approx \tau^2\,\|v\|\,h_{m+1,m}\,\big|e_m^\top\varphi_2(\tau H_m)e_1\big| .

When :math:`t\|A\|` is large the interval is split into sub-steps, each restarted from :math:`v = Ay + b`,
with the step length chosen so that the local estimate stays below the tolerance.  Everything is
differentiable by autograd.  :class:`ExponentialIntegrator` and :class:`FixedStepIntegrator` both return a
:class:`LinearODEResult`, so callers switch between them without changing anything else.

References
----------
Zeilmann, Savarino, Petra, Schnörr, *Geometric numerical integration of the assignment flow*, Inverse
Problems 36 (2020).  Y. Saad, *Analysis of some Krylov subspace approximations to the matrix exponential
operator*, SIAM J. Numer. Anal. 29 (1992).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .._checks import UserInputError, UserTypeError, check_finite, check_int, check_positive
from ..status import Status
from .arnoldi import Matvec, arnoldi
from .base import Euler, LinearODEResult, Solver, integrate, linear_grid

__all__ = ["ExponentialIntegrator", "FixedStepIntegrator", "KrylovStatus", "krylov_phi", "phi_functions"]

KrylovStatus = Status  #: the statuses of krylov_phi: SUCCESS, BREAKDOWN, MAX_SUBSTEPS


def phi_functions(H: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    r""":math:`\varphi_1(\tau H)e_1` and :math:`\varphi_2(\tau H)e_1` for a small square ``H``, from one matrix
    exponential of size ``m + 2`` in float64 (:math:`\varphi_1(z) = (e^z-1)/z`,
    :math:`\varphi_2(z) = (e^z-1-z)/z^2`)."""
    m = H.shape[0]
    aug = torch.nn.functional.pad(tau * H.to(torch.float64), (0, 2, 0, 2))
    aug[0, m] = aug[m, m + 1] = 1.0
    E = torch.linalg.matrix_exp(aug)
    return E[:m, m].to(H.dtype), E[:m, m + 1].to(H.dtype)


def krylov_phi(matvec: Matvec, b: torch.Tensor, t: float, *, y0: torch.Tensor | None = None, m: int = 10,
               rtol: float = 1e-10, substeps: int | None = None, max_substeps: int = 1000) -> LinearODEResult:
    r"""Exponential integration of :math:`\dot y = Ay + b` over :math:`[0, t]` with Krylov :math:`\varphi`.

    Returns :math:`y(t) = y_0 + t\,\varphi(tA)(Ay_0 + b)`; with ``y0 = None`` this is
    :math:`t\,\varphi(tA)\,b`, the linearized assignment flow :math:`V(T) = T\varphi(TA)B`.

    Parameters
    ----------
    matvec : callable
        :math:`x\mapsto Ax` on tensors of ``b``'s shape (any shape).
    y0 : tensor, optional
        Initial value (default 0, which saves one product).
    m : int
        Krylov dimension per (sub-)step; 10 suffices for assignment flows.
    rtol : float
        Relative tolerance on the a-posteriori error estimate (adaptive mode).
    substeps : int, optional
        Fixed number of equal sub-steps, no error control (reproducible graph for autodiff); default:
        adaptive sub-stepping driven by the error estimate, at most ``max_substeps`` accepted + rejected.

    Returns
    -------
    LinearODEResult
        ``y`` at ``t`` (at the time reached if ``status`` is ``MAX_SUBSTEPS``), the sum of the local a-posteriori
        error estimates (absolute, 2-norm), ``stats``: ``substeps``, ``rejected``, ``matvecs``, ``krylov_dim``
        (of the last step).
    """
    t = check_positive("t", t)
    m = check_int("m", m, minimum=1)
    rtol = check_positive("rtol", rtol)
    check_finite("b", b)
    if y0 is not None:
        if y0.shape != b.shape:
            raise UserInputError(f"y0 must have the shape of b {tuple(b.shape)}, got {tuple(y0.shape)}")
        check_finite("y0", y0)
    if substeps is not None:
        substeps = check_int("substeps", substeps, minimum=1)
    max_substeps = check_int("max_substeps", max_substeps, minimum=1)

    y = torch.zeros_like(b) if y0 is None else y0
    y_is_zero = y0 is None
    t_now, tau = 0.0, t if substeps is None else t / substeps
    err_total, matvecs, accepted, rejected, last_dim = 0.0, 0, 0, 0, 0
    status = KrylovStatus.SUCCESS
    any_breakdown = False
    tiny = torch.finfo(b.dtype).tiny
    while t - t_now > 1e-14 * t:
        if substeps is None and accepted + rejected >= max_substeps:
            status = KrylovStatus.MAX_SUBSTEPS
            break
        if y_is_zero:
            v = b
        else:
            v = matvec(y) + b
            matvecs += 1
        if float(torch.linalg.vector_norm(v.detach())) == 0.0:  # stationary point: y stays exactly
            t_now = t
            break
        ar = arnoldi(matvec, v, m)
        matvecs += ar.dim
        last_dim = ar.dim
        while True:
            tau = t - t_now if (substeps is not None and accepted == substeps - 1) else min(tau, t - t_now)
            p1, p2 = phi_functions(ar.hessenberg, tau)
            step = (tau * ar.beta) * ar.combine(p1)
            err = 0.0 if ar.breakdown else float(tau * tau * ar.beta.detach() * ar.h_next * p2[-1].detach().abs())
            if substeps is not None or ar.breakdown:
                ok = True
                break
            allowed = rtol * max(float(torch.linalg.vector_norm((y + step).detach())), tiny) * tau / t
            if err <= allowed:
                ok = True
                break
            rejected += 1
            if accepted + rejected >= max_substeps:
                ok = False
                break
            # Expokit-style shrink, the local error behaving like tau^(m+1)
            tau = tau * max(0.2, min(0.5, 0.9 * (allowed / err) ** (1.0 / (ar.dim + 1))))
        if not ok:
            status = KrylovStatus.MAX_SUBSTEPS
            break
        y = y + step
        y_is_zero = False
        any_breakdown = any_breakdown or ar.breakdown
        err_total += err
        t_now += tau
        accepted += 1
        if substeps is None:
            if ar.breakdown or err == 0.0:
                tau = t - t_now
            else:  # grow the next step when the estimate leaves room
                tau = tau * min(2.0, max(1.0, 0.9 * (allowed / err) ** (1.0 / (ar.dim + 1))))
    if status is KrylovStatus.SUCCESS and any_breakdown and accepted == 1:
        status = KrylovStatus.BREAKDOWN
    stats = {"substeps": accepted, "rejected": rejected, "matvecs": matvecs, "krylov_dim": last_dim}
    return LinearODEResult(y=y, error_estimate=err_total, status=status, stats=stats)


@dataclass(frozen=True)
class ExponentialIntegrator:
    r"""Exact-in-time exponential integration :math:`y(t) = t\varphi(tA)b` by :func:`krylov_phi`, with its
    Krylov dimension ``m``, tolerance ``rtol`` and optional fixed number of ``substeps``."""

    m: int = 10
    rtol: float = 1e-8
    substeps: int | None = None

    def __post_init__(self):
        check_int("m", self.m, minimum=1)
        check_positive("rtol", self.rtol)
        if self.substeps is not None:
            check_int("substeps", self.substeps, minimum=1)

    def solve(self, matvec: Callable, b: torch.Tensor, t: float) -> LinearODEResult:
        r""":math:`y(t) = t\varphi(tA)b` for ``matvec`` :math:`y \mapsto Ay` on tensors shaped like ``b``
        (any shape, e.g. ``(I, J)``), with the Krylov error estimate."""
        return krylov_phi(matvec, b, t, m=self.m, rtol=self.rtol, substeps=self.substeps)


@dataclass(frozen=True)
class FixedStepIntegrator:
    """Time stepping with a Runge--Kutta ``solver`` on ``ceil(t / step_size)`` equal steps."""

    solver: Solver = field(default_factory=Euler)
    step_size: float = 0.1

    def __post_init__(self):
        check_positive("step_size", self.step_size)
        if not isinstance(self.solver, Solver):
            raise UserTypeError(f"solver must be a flowlearn.solvers.Solver, got {type(self.solver).__name__}")

    def solve(self, matvec: Callable, b: torch.Tensor, t: float) -> LinearODEResult:
        r"""Integrate :math:`\dot y = Ay + b`, :math:`y(0) = 0`, to ``t`` (as :meth:`ExponentialIntegrator.solve`);
        ``error_estimate`` is NaN and ``stats["matvecs"]`` the number of field evaluations."""
        t = check_positive("t", t)
        steps = max(1, math.ceil(t / self.step_size - 1e-9))
        sol = integrate(lambda _t, y: matvec(y) + b, torch.zeros_like(b), linear_grid(t, steps), self.solver)
        stats = dict(sol.stats, matvecs=sol.stats["nfev"])
        return LinearODEResult(y=sol.y, error_estimate=float("nan"), status=sol.status, stats=stats)
