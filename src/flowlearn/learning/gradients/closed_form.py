r"""The closed-form gradient of Theorem 3.8: ``exact`` (dense) and ``lowrank`` (Krylov + Benzi--Simoncini).

Both use the augmented matrix :math:`\mathcal A = \begin{psmallmatrix}TA^J & Tb\\0&0\end{psmallmatrix}`
(:math:`k = IJ+1`), whose exponential holds :math:`v_T = [e^{\mathcal A}]_{1:IJ,\,k}`, and

.. math:: \langle\partial f_L, dv_T\rangle = \langle G, d\mathcal A\rangle,\qquad
          G = \int_0^1 e^{s\mathcal A^\top}b_1b_2^\top e^{(1-s)\mathcal A^\top}ds,\quad
          b_1 = (\partial f_L(v_T), 0),\ b_2 = e_k ,

i.e. (3.36) with :math:`M_1 = \mathcal A^\top`, :math:`M_2 = \mathcal A` (see
:mod:`flowlearn.learning.kronecker`).  :math:`G` is then contracted with
:math:`d\mathcal A = \begin{psmallmatrix}T\,dA^J & T\,db\\0&0\end{psmallmatrix}` by
:mod:`flowlearn.learning.contraction`.

``lowrank`` (3.47): the Krylov space :math:`\mathcal K_{m+1}(\mathcal A, e_k) =
\mathrm{span}\{e_k, (b,0), (A^Jb,0),\dots\}` *is* the forward solve's space :math:`\mathcal K_m(A^J, b)`
plus :math:`e_k`, with Hessenberg :math:`T_2 = \begin{psmallmatrix}0&0\\T\beta e_1 & TH_m\end{psmallmatrix}`,
so it is reused; only rows :math:`1..IJ` of :math:`G` are needed, which come from the adjoint space
:math:`\mathcal K_m(A^{J\top}, \partial f_L)` with :math:`T_1 = TH^{\mathrm{adj}}_m`.  Then
:math:`G_{1:IJ,\cdot} \approx \|\partial f_L\|\,P_mXQ_m^\top`, :math:`X` from
:func:`~flowlearn.learning.kronecker.benzi_simoncini`.  The column of :math:`X` that belongs to
:math:`e_k` gives the :math:`b`-part :math:`G_{12} \approx \|\partial f_L\|P_mX_{:,0}` exactly (one
vector); the :math:`m\times m` block that gives :math:`G_{11}` is truncated to rank ``rank`` (3.46).
Memory: the two bases, :math:`2(m+1)k` numbers (:func:`~flowlearn.solvers.arnoldi` takes its preallocated
block path under ``no_grad``); no :math:`k\times k` matrix is ever formed; :math:`\Omega` and
:math:`\Omega^\top` act as CSR matrices (:meth:`~flowlearn.graphs.WeightOperator.sparse_operator`).
With ``recompute_forward=True`` only one basis is alive at a time: the forward basis is dropped once
:math:`V_T` is known and rebuilt by a second, identical Arnoldi run after the adjoint basis has been
contracted, i.e. :math:`(m+1)k` numbers for :math:`m` more products with :math:`A` and one more
Gram--Schmidt sweep.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..._checks import UserInputError, UserTypeError, check_int
from ...geometry import replicator, replicator_
from ...solvers import arnoldi
from ..contraction import (
    WeightGradientTerms,
    assemble_weight_gradient,
    bilinear_terms,
    dense_terms,
)
from ..kronecker import benzi_simoncini, frechet_block, truncate
from ..losses import LearningProblem
from .base import DataGradient, GradientMethod

__all__ = ["ExactGradient", "LowRankGradient", "MAX_EXACT_SIZE"]

#: Largest ``I * J`` accepted by the dense ``exact`` method (an exponential of size ``2(IJ+1)``).
MAX_EXACT_SIZE = 2500


def augmented_matrix(A: torch.Tensor, b: torch.Tensor, T: float) -> torch.Tensor:
    r""":math:`\mathcal A = \begin{psmallmatrix}TA & Tb\\0&0\end{psmallmatrix}` (3.22b), dense ``(k, k)``."""
    n = A.shape[0]
    top = torch.cat([T * A, T * b.reshape(n, 1)], dim=1)
    return torch.cat([top, torch.zeros(1, n + 1, dtype=A.dtype, device=A.device)], dim=0)


@dataclass(frozen=True)
class ExactGradient(GradientMethod):
    r"""Theorem 3.8 evaluated densely: :math:`v_T` from :math:`e^{\mathcal A}`, :math:`G` from one exponential of
    size :math:`2k` (equal to the dense :math:`\varphi` of the Kronecker sum).  Reference for ``I*J <= 2500``."""

    name = "exact"

    def data_gradient(self, problem: LearningProblem, patches: torch.Tensor) -> DataGradient:
        I, J = problem.scaled_distances.shape
        if I * J > MAX_EXACT_SIZE:
            raise UserInputError(f"the exact gradient is dense: I*J must be <= {MAX_EXACT_SIZE}, got {I * J} "
                             f"(use 'lowrank')")
        system = problem.system(patches)
        n, T = I * J, problem.T
        aug = augmented_matrix(system.dense(), system.B.reshape(-1), T)
        V = torch.linalg.matrix_exp(aug)[:n, n].reshape(I, J)
        g = problem.data_loss_grad(V)
        b1 = torch.cat([g.reshape(-1), g.new_zeros(1)])
        b2 = torch.zeros_like(b1)
        b2[n] = 1.0
        G = frechet_block(aug.T, aug, b1, b2)
        terms = dense_terms(system, T * G[:n, :n])
        grad_w = assemble_weight_gradient(system, problem.scaled_distances, terms, T * G[:n, n].reshape(I, J))
        return DataGradient(tangent=V, grad_patches=system.weights.grad_to_patches(grad_w),
                            stats={"augmented_size": n + 1})


@dataclass(frozen=True)
class LowRankGradient(GradientMethod):
    r"""Low-rank approximation (3.47): Krylov dimension ``m`` for the forward and adjoint spaces, rank ``rank``.

    ``V_T`` is the Krylov solution :math:`T\beta Q_m\varphi(TH_m)e_1` of the same space, so loss and
    gradient are consistent.  ``stats`` holds the Krylov dimensions, breakdown flags, the singular values
    of :math:`X` and the number of products with :math:`A` and :math:`A^\top`.

    Parameters
    ----------
    m : int
        Krylov dimension of the forward and of the adjoint space.
    rank : int
        Rank of the truncated SVD of :math:`X` (3.46).
    recompute_forward : bool
        Keep only one Krylov basis in memory at a time (about half the basis memory of the default)
        by running the forward Arnoldi twice; the same result, for ``m`` more products with :math:`A`.
    """

    m: int = 10
    rank: int = 1
    recompute_forward: bool = False
    name = "lowrank"

    def __post_init__(self):
        check_int("m", self.m, minimum=1)
        check_int("rank", self.rank, minimum=1)
        if not isinstance(self.recompute_forward, bool):
            raise UserTypeError(f"recompute_forward must be a bool, got {self.recompute_forward!r}")

    def data_gradient(self, problem: LearningProblem, patches: torch.Tensor) -> DataGradient:
        with torch.no_grad():
            return self._compute(problem, patches)

    def _compute(self, problem: LearningProblem, patches: torch.Tensor) -> DataGradient:
        system = problem.system(patches)
        S, T = system.S, problem.T
        omega, omega_t = system.weights.sparse_operator()
        matvec = lambda U: replicator_(S, omega @ U)  # noqa: E731   A U = R_S(Omega U)
        rmatvec = lambda U: omega_t @ replicator(S, U)  # noqa: E731   A^T U = Omega^T R_S(U)
        if float(torch.linalg.vector_norm(system.B)) == 0.0:  # B = 0 only for exactly uniform S0
            V = torch.zeros_like(system.B)
            return DataGradient(tangent=V, grad_patches=torch.zeros_like(patches), status="zero_rhs",
                                stats={"krylov_dim": 0, "adjoint_dim": 0})
        fwd = arnoldi(matvec, system.B, self.m)
        mf = fwd.dim
        T2 = torch.zeros(mf + 1, mf + 1, dtype=torch.float64, device=system.S.device)
        T2[1, 0] = T * float(fwd.beta)
        T2[1:, 1:] = T * fwd.hessenberg.to(torch.float64)
        col = torch.linalg.matrix_exp(T2)[1:, 0].to(system.S.dtype)  # T beta phi(T H) e1
        V = fwd.combine(col)
        stats = {"krylov_dim": mf, "forward_breakdown": fwd.breakdown, "matvecs": mf}
        forward_hessenberg = fwd.hessenberg
        if self.recompute_forward:
            del fwd  # only H_m is needed until the right factors are known
        g = problem.data_loss_grad(V)
        gnorm = torch.linalg.vector_norm(g)
        if float(gnorm) == 0.0:
            return DataGradient(tangent=V, grad_patches=torch.zeros_like(patches), status="zero_loss_gradient",
                                stats=dict(stats, adjoint_dim=0))
        adj = arnoldi(rmatvec, g, self.m)
        del g
        X = gnorm * benzi_simoncini(T * adj.hessenberg, T2)           # (m_adj, mf + 1)
        grad_b = T * adj.combine(X[:, 0])                               # T G12
        factors = truncate(X[:, 1:], self.rank)                         # G11 ~ P (left right^T) Q^T
        left = [T * adj.combine(factors.left[:, r]) for r in range(factors.rank)]
        adjoint_dim, adjoint_breakdown = adj.dim, adj.breakdown
        del adj
        if self.recompute_forward:
            fwd = arnoldi(matvec, system.B, self.m)
            tol = torch.finfo(V.dtype).eps ** 0.5 * float(forward_hessenberg.abs().max())
            if fwd.dim != mf or float((fwd.hessenberg - forward_hessenberg).abs().max()) > tol:
                raise RuntimeError("the recomputed forward Krylov space differs from the first one "
                                   "(non-deterministic matvec?); use recompute_forward=False")
        right = [fwd.combine(factors.right[:, r]) for r in range(factors.rank)]
        del fwd  # both bases are gone before the contraction's work vectors appear
        terms = WeightGradientTerms(torch.zeros_like(patches), torch.zeros_like(V))
        for Xr, Yr in zip(left, right):
            terms = terms + bilinear_terms(system, Xr, Yr)
        del left, right
        grad_w = assemble_weight_gradient(system, problem.scaled_distances, terms, grad_b)
        stats.update(adjoint_dim=adjoint_dim, adjoint_breakdown=adjoint_breakdown, rank=factors.rank,
                     singular_values=factors.singular_values.tolist(),
                     matvecs=mf * (2 if self.recompute_forward else 1) + adjoint_dim + factors.rank)
        return DataGradient(tangent=V, grad_patches=system.weights.grad_to_patches(grad_w), stats=stats)
