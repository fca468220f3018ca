r"""The one closed form of the linearized flow: forward :math:`V_T` and the gradient of Theorem 3.8, dense
(``exact_*``) and Krylov + Benzi--Simoncini low rank (``krylov_*``).

Both use the augmented matrix :math:`\mathcal A = \begin{psmallmatrix}TA^J & Tb\\0&0\end{psmallmatrix}`
(:math:`k = IJ+1`), whose exponential holds :math:`v_T = [e^{\mathcal A}]_{1:IJ,\,k}`, and

.. math:: \langle\partial f_L, dv_T\rangle = \langle G, d\mathcal A\rangle,\qquad
          G = \int_0^1 e^{s\mathcal A^\top}b_1b_2^\top e^{(1-s)\mathcal A^\top}ds,\quad
          b_1 = (\partial f_L(v_T), 0),\ b_2 = e_k ,

i.e. (3.36) with :math:`M_1 = \mathcal A^\top`, :math:`M_2 = \mathcal A` (see
:mod:`flowlearn.linearized.kronecker`).  :math:`G` is then contracted with
:math:`d\mathcal A = \begin{psmallmatrix}T\,dA^J & T\,db\\0&0\end{psmallmatrix}` by
:mod:`flowlearn.linearized.contraction`.

``lowrank`` (3.47): the Krylov space :math:`\mathcal K_{m+1}(\mathcal A, e_k) =
\mathrm{span}\{e_k, (b,0), (A^Jb,0),\dots\}` *is* the forward solve's space :math:`\mathcal K_m(A^J, b)`
plus :math:`e_k`, with Hessenberg :math:`T_2 = \begin{psmallmatrix}0&0\\T\beta e_1 & TH_m\end{psmallmatrix}`,
so it is reused; only rows :math:`1..IJ` of :math:`G` are needed, which come from the adjoint space
:math:`\mathcal K_m(A^{J\top}, \partial f_L)` with :math:`T_1 = TH^{\mathrm{adj}}_m`.  Then
:math:`G_{1:IJ,\cdot} \approx \|\partial f_L\|\,P_mXQ_m^\top`, :math:`X` from
:func:`~flowlearn.linearized.kronecker.benzi_simoncini`.  The column of :math:`X` that belongs to
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

from .._checks import UserInputError
from ..geometry import replicator
from ..geometry.simplex import replicator_
from ..solvers.arnoldi import BatchArnoldi, batch_arnoldi
from .contraction import WeightGradientTerms, bilinear_terms, dense_terms
from .kronecker import benzi_simoncini, frechet_block, truncate
from .system import LinearizedSystem

__all__ = [
    "MAX_EXACT_SIZE",
    "KrylovForward",
    "augmented_matrix",
    "exact_backward",
    "exact_forward",
    "krylov_backward",
    "krylov_forward",
]

#: Largest ``I * J`` accepted by the dense ``exact`` method (an exponential of size ``2(IJ+1)``).
MAX_EXACT_SIZE = 2500


def augmented_matrix(A: torch.Tensor, b: torch.Tensor, T: float) -> torch.Tensor:
    r""":math:`\mathcal A = \begin{psmallmatrix}TA & Tb\\0&0\end{psmallmatrix}` (3.22b), dense ``(..., k, k)``
    for ``A`` ``(..., n, n)`` and ``b`` ``(..., n)``."""
    n = A.shape[-1]
    aug = torch.zeros(*A.shape[:-2], n + 1, n + 1, dtype=A.dtype, device=A.device)
    aug[..., :n, :n] = T * A
    aug[..., :n, n] = T * b
    return aug


# ------------------------------------------------------------------ dense (exact) core
def exact_forward(system: LinearizedSystem, T: float) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(aug, V)``: the dense :math:`\mathcal A` ``(B, k, k)`` and :math:`V_T = [e^{\mathcal A}]_{1:IJ,k}`
    ``(B, I, J)`` of a batched system (:meth:`LinearizedSystem.batched`).

    Raises ``UserInputError`` for ``I * J > MAX_EXACT_SIZE``.
    """
    nb, I, J = system.S.shape
    if I * J > MAX_EXACT_SIZE:
        raise UserInputError(f"the exact gradient is dense: I*J must be <= {MAX_EXACT_SIZE}, got {I * J} "
                             f"(use LowRank)")
    n = I * J
    aug = augmented_matrix(system.dense(), system.B.reshape(nb, n), T)
    return aug, torch.linalg.matrix_exp(aug)[:, :n, n].reshape(nb, I, J)


def exact_backward(system: LinearizedSystem, aug: torch.Tensor, g: torch.Tensor,
                   T: float) -> tuple[WeightGradientTerms, torch.Tensor]:
    r"""Theorem 3.8 for any cotangent ``g`` ``(B, I, J)`` of :math:`V_T`: :math:`G = L_{\exp}(\mathcal A^\top,
    [g;0]e_k^\top)` densely (:func:`frechet_block`); returns the contraction terms of :math:`TG_{11}` and
    :math:`\partial_B = TG_{12}` ``(B, I, J)`` (feed both to
    :func:`~flowlearn.linearized.contraction.data_term_gradients`)."""
    nb, I, J = system.S.shape
    n = I * J
    b1 = torch.cat([g.reshape(nb, n).to(aug.dtype), aug.new_zeros(nb, 1)], dim=1)
    b2 = torch.zeros_like(b1)
    b2[:, n] = 1.0
    G = frechet_block(aug.transpose(1, 2), aug, b1, b2)
    return dense_terms(system, T * G[:, :n, :n]), T * G[:, :n, n].reshape(nb, I, J)


# ------------------------------------------------------------------ Krylov low-rank core
def _operators(system: LinearizedSystem):
    S = system.S
    omega, omega_t = system.weights.sparse_operator()
    flat = (-1, S.shape[-1])
    matvec = lambda U: replicator_(S, (omega @ U.reshape(flat)).view(S.shape))
    rmatvec = lambda U: (omega_t @ replicator(S, U).reshape(flat)).view(S.shape)
    return matvec, rmatvec


@dataclass
class KrylovForward:
    r"""Forward Krylov solves :math:`V_{T,b} = T\beta_bQ_{m,b}\varphi(TH_{m,b})e_1` of a batch and what the
    backward pass needs.

    Attributes
    ----------
    tangent : tensor ``(B, I, J)``
        :math:`V_T`.
    T2 : float64 tensor ``(B, m + 1, m + 1)``
        Hessenberg matrices of :math:`\mathcal K_{m+1}(\mathcal A_b, e_k)`,
        :math:`\begin{psmallmatrix}0&0\\T\beta e_1&TH_m\end{psmallmatrix}`, zero-padded after a breakdown
        (all zero where :math:`B_b = 0`).
    basis : BatchArnoldi or None
        The forward bases (``None`` if dropped for ``recompute_forward``).
    hessenberg : tensor ``(B, m, m)``
        :math:`H_m` (to verify a recomputed basis).
    m : int
        Requested Krylov dimension; ``dim`` the ones reached (list, 0 where :math:`B_b = 0`), ``breakdown``
        the per-sample Arnoldi flags.
    """

    tangent: torch.Tensor
    T2: torch.Tensor
    basis: BatchArnoldi | None
    hessenberg: torch.Tensor
    m: int
    dim: list
    breakdown: list


def krylov_forward(system: LinearizedSystem, T: float, m: int, *, keep_basis: bool = True) -> KrylovForward:
    r"""Forward solves on :math:`\mathcal K_m(A^J_b, b_b)`, one per sample of the batched ``system``, in one
    block (no autograd, no loop over samples); ``keep_basis=False`` drops the bases once :math:`V_T` is
    known (memory :math:`(m+1)k` per sample for the later backward, see :func:`krylov_backward`)."""
    with torch.no_grad():
        B = system.B
        matvec, _ = _operators(system)
        fwd = batch_arnoldi(matvec, B, m)
        nb = B.shape[0]
        T2 = torch.zeros(nb, m + 1, m + 1, dtype=torch.float64, device=B.device)
        T2[:, 1, 0] = T * fwd.beta.to(torch.float64)
        T2[:, 1:, 1:] = T * fwd.hessenberg.to(torch.float64)
        col = torch.linalg.matrix_exp(T2)[:, 1:, 0].to(B.dtype)  # T beta phi(T H) e1
        V = fwd.combine(col)
        return KrylovForward(V, T2, fwd if keep_basis else None, fwd.hessenberg, m, fwd.dim, fwd.breakdown)


def krylov_backward(system: LinearizedSystem, fwd: KrylovForward, g: torch.Tensor, T: float, m: int,
                    rank: int) -> tuple[WeightGradientTerms, torch.Tensor, dict]:
    r"""Low-rank Theorem 3.8 (3.47) for any cotangent ``g`` ``(B, I, J)`` of :math:`V_T`, per sample.

    Adjoint spaces :math:`\mathcal K_m(A^{J\top}_b, g_b)` (:math:`T_1 = TH^{adj}`), :math:`X = \|g_b\|\,
    G(T_1, T_2; e_1, e_1)`; :math:`\partial_B = TG_{12} = T\|g_b\|P_mX_{:,0}` (exact in the spaces) and
    :math:`TG_{11} \approx \sum_{r<\mathrm{rank}} x_ry_r^\top` from the SVD of :math:`X_{:,1:}`, contracted on
    the stencil.  Rebuilds the forward bases if ``fwd.basis`` is ``None`` (after the adjoint bases are freed)
    and releases them afterwards (``fwd.basis = None``), so that the two bases are never alive together with
    the contraction's work vectors.

    Returns
    -------
    (terms, grad_b, stats)
        ``stats``: per-sample lists ``adjoint_dim``, ``adjoint_breakdown``, ``singular_values``, and ``rank``.
    """
    with torch.no_grad():
        matvec, rmatvec = _operators(system)
        adj = batch_arnoldi(rmatvec, g, m)
        X = adj.beta.view(-1, 1, 1) * benzi_simoncini(T * adj.hessenberg, fwd.T2)  # (B, m, m + 1)
        grad_b = T * adj.combine(X[:, :, 0])                                        # T G12
        factors = truncate(X[:, :, 1:], rank)                                       # G11 ~ P (l r^T) Q^T
        left = [T * adj.combine(factors.left[..., r]) for r in range(factors.rank)]
        stats = {"adjoint_dim": adj.dim, "adjoint_breakdown": adj.breakdown, "rank": factors.rank,
                 "singular_values": factors.singular_values.tolist()}
        del adj
        basis = fwd.basis
        if basis is None:
            basis = batch_arnoldi(matvec, system.B, fwd.m)
            tol = torch.finfo(system.S.dtype).eps ** 0.5 * float(fwd.hessenberg.abs().max())
            if basis.dim != fwd.dim or float((basis.hessenberg - fwd.hessenberg).abs().max()) > tol:
                raise RuntimeError("the recomputed forward Krylov space differs from the first one "
                                   "(non-deterministic matvec?); use recompute_forward=False")
        right = [basis.combine(factors.right[..., r]) for r in range(factors.rank)]
        fwd.basis = None  # released: a second backward through the same fwd rebuilds it
        del basis  # both bases are gone before the contraction's work vectors appear
        terms = WeightGradientTerms(torch.zeros_like(system.weights.weights), torch.zeros_like(system.S))
        for Xr, Yr in zip(left, right):
            terms = terms + bilinear_terms(system, Xr, Yr)
        return terms, grad_b, stats
