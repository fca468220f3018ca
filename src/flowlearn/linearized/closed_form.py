r"""The one closed form of the linearized flow: forward :math:`V_T` and the gradient of Theorem 3.8, dense
(``exact_*``) and Krylov + Benzi--Simoncini low rank (``krylov_*``).

Both use the augmented :math:`\mathcal A = \begin{psmallmatrix}TA^J & Tb\\0&0\end{psmallmatrix}` (:math:`k = IJ+1`),
:math:`v_T = [e^{\mathcal A}]_{1:IJ,\,k}`, and

.. math:: \langle\partial f_L, dv_T\rangle = \langle G, d\mathcal A\rangle,\qquad
          G = \int_0^1 e^{s\mathcal A^\top}b_1b_2^\top e^{(1-s)\mathcal A^\top}ds,\quad
          b_1 = (\partial f_L(v_T), 0),\ b_2 = e_k .

Fréchet derivative (paper 000, (2.1)--(2.3), (3.36); Higham, *Functions of Matrices*, Thm 10.13):
:math:`\mathrm{vec}_r` stacks *rows*, :math:`(M_1\oplus M_2)\,\mathrm{vec}_r(Z) = \mathrm{vec}_r(M_1Z + ZM_2^\top)`,
and :math:`G(M_1, M_2; b_1, b_2) = \int_0^1 e^{sM_1}b_1b_2^\top e^{(1-s)M_2^\top}ds` has
:math:`\mathrm{vec}_r(G) = (I\otimes e^{M_2})\,\varphi(M_1\oplus(-M_2))\,(b_1\otimes b_2)`, here with
:math:`M_1 = \mathcal A^\top`, :math:`M_2 = \mathcal A`.  The tests evaluate it literally (``frechet_kronecker``,
tiny problems), :func:`frechet_block` as a block of a :math:`2k` exponential (Van Loan 1978; ``exact``),
:func:`benzi_simoncini` the small :math:`X = G(T_1, T_2; e_1, e_1)` of (3.42)
:math:`G \approx \|b_1\|\|b_2\|\,P_m X Q_m^\top`, truncated by :func:`truncate` (3.45)--(3.47).

Contraction with :math:`d\mathcal A` (M1--M4): with :math:`S = \mathrm{softmax}(Z)`, :math:`Z = -\Omega D/\rho`,
:math:`A^J_{(i,a),(l,b)} = \Omega_{il}\,(R_{S_i})_{ab}` and :math:`b = \mathrm{vec}_r(\frac1J\Pi_0S)`:
directly :math:`\partial_{\omega_{in}} = \sum_{a,b}(R_{S_i})_{ab}\,(G_{11})_{(i,a),(k(i,n),b)}`; through
:math:`S_i`, with :math:`K_i = \sum_l\Omega_{il}(G_{11})_{(i,\cdot),(l,\cdot)}`, :math:`\mathrm{diag}(K_i) - K_iS_i
- K_i^\top S_i` (Lemma 3.4) plus :math:`\frac1J\Pi_0 G_{12}` (Lemma 3.3); then the softmax (Lemma 3.2,
:func:`data_term_gradients`).  A low-rank :math:`G_{11} = \sum_r x_ry_r^\top` is contracted on the stencil
(:math:`O(IJN)`).  Gradients are w.r.t. the *effective* weights ``([B,] I, N)``.

Low rank (3.47): :math:`\mathcal K_{m+1}(\mathcal A, e_k)` is the forward space :math:`\mathcal K_m(A^J, b)` plus
:math:`e_k`, with Hessenberg :math:`T_2 = \begin{psmallmatrix}0&0\\T\beta e_1 & TH_m\end{psmallmatrix}`, so it is
reused; rows :math:`1..IJ` of :math:`G` come from the adjoint space :math:`\mathcal K_m(A^{J\top}, \partial f_L)`
(:math:`T_1 = TH^{\mathrm{adj}}_m`): :math:`G_{1:IJ,\cdot} \approx \|\partial f_L\|\,P_mXQ_m^\top`.  The column of
:math:`X` of :math:`e_k` gives :math:`G_{12}` exactly; the block of :math:`G_{11}` is truncated to rank ``rank``
(3.46).  Memory: the two bases, :math:`2(m+1)k` numbers, never a :math:`k\times k` matrix; with
``recompute_forward`` one basis, :math:`(m+1)k`, for one more Arnoldi run in the backward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._checks import UserInputError
from ..geometry import proj_tangent, replicator
from ..geometry.simplex import replicator_, replicator_matrix
from ..solvers.arnoldi import BatchArnoldi, batch_arnoldi
from .system import LinearizedSystem

__all__ = ["MAX_EXACT_SIZE", "KrylovForward", "LowRankFactors", "WeightGradientTerms", "augmented_matrix",
           "benzi_simoncini", "bilinear_terms", "data_term_gradients", "dense_terms", "exact_backward",
           "exact_forward", "frechet_block", "krylov_backward", "krylov_forward", "truncate"]


def frechet_block(M1: torch.Tensor, M2: torch.Tensor, b1: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    r""":math:`G = \int_0^1 e^{sM_1}b_1b_2^\top e^{(1-s)M_2^\top}ds`, the upper-right block of
    :math:`\exp\begin{psmallmatrix}M_1 & b_1b_2^\top\\0 & M_2^\top\end{psmallmatrix}`.

    ``M1`` ``(..., n1, n1)``, ``M2`` ``(..., n2, n2)``, ``b1`` ``(..., n1)``, ``b2`` ``(..., n2)`` (leading
    dimensions broadcast); returns ``(..., n1, n2)``.
    """
    n1, n2 = M1.shape[-1], M2.shape[-1]
    lead = torch.broadcast_shapes(M1.shape[:-2], M2.shape[:-2], b1.shape[:-1], b2.shape[:-1])
    aug = torch.zeros(*lead, n1 + n2, n1 + n2, dtype=M1.dtype, device=M1.device)
    aug[..., :n1, :n1] = M1
    aug[..., :n1, n1:] = b1.unsqueeze(-1) * b2.unsqueeze(-2)
    aug[..., n1:, n1:] = M2.transpose(-1, -2)
    return torch.linalg.matrix_exp(aug)[..., :n1, n1:]


def benzi_simoncini(T1: torch.Tensor, T2: torch.Tensor) -> torch.Tensor:
    r"""The small :math:`X = G(T_1, T_2; e_1, e_1)` ``(..., m1, m2)`` of the Benzi--Simoncini approximation
    (3.42), computed in float64 by :func:`frechet_block`."""
    dt = torch.float64
    e1 = torch.eye(T1.shape[-1], dtype=dt, device=T1.device)[0]
    e2 = torch.eye(T2.shape[-1], dtype=dt, device=T2.device)[0]
    return frechet_block(T1.to(dt), T2.to(dt), e1, e2).to(T1.dtype)


@dataclass
class LowRankFactors:
    r"""Truncated SVD :math:`X \approx \sum_{r<R}\sigma_r y_r z_r^\top` (3.45): ``left`` ``(..., m1, R)`` the
    columns :math:`\sigma_r y_r`, ``right`` ``(..., m2, R)`` the :math:`z_r`, ``singular_values`` all of them
    (the rank study, Fig. 4b)."""

    left: torch.Tensor
    right: torch.Tensor
    singular_values: torch.Tensor

    @property
    def rank(self) -> int:
        return self.left.shape[-1]


def truncate(X: torch.Tensor, rank: int) -> LowRankFactors:
    """Rank-``rank`` truncation of ``X`` ``(..., m1, m2)`` by the SVD (at most ``min(m1, m2)``)."""
    U, s, Vh = torch.linalg.svd(X, full_matrices=False)
    r = min(rank, s.shape[-1])
    return LowRankFactors(left=U[..., :r] * s[..., None, :r], right=Vh[..., :r, :].transpose(-1, -2),
                          singular_values=s)


@dataclass
class WeightGradientTerms:
    r"""Partial gradients of :math:`\langle G_{11}, A^J\rangle`: ``direct`` ``([B,] I, N)`` w.r.t. the weights
    at fixed :math:`S`, ``through_s`` ``([B,] I, J)`` w.r.t. :math:`S`."""

    direct: torch.Tensor
    through_s: torch.Tensor

    def __add__(self, other: WeightGradientTerms) -> WeightGradientTerms:
        return WeightGradientTerms(self.direct + other.direct, self.through_s + other.through_s)


def bilinear_terms(system: LinearizedSystem, X: torch.Tensor, Y: torch.Tensor) -> WeightGradientTerms:
    r"""Gradient of :math:`\langle X, R_S(\Omega Y)\rangle` (``X, Y`` of shape ``([B,] I, J)``)."""
    S, op = system.S, system.weights
    Z = op.apply(Y)
    direct = op.patch_products(replicator(S, X), Y)
    through_s = X * Z - (S * Z).sum(-1, keepdim=True) * X - (S * X).sum(-1, keepdim=True) * Z
    return WeightGradientTerms(direct=direct, through_s=through_s)


def dense_terms(system: LinearizedSystem, G11: torch.Tensor) -> WeightGradientTerms:
    r"""Gradient of :math:`\langle G_{11}, A^J\rangle` for dense ``(B, IJ, IJ)`` matrices (small problems)."""
    S, op = system.S, system.weights
    nb, I, J = S.shape
    G4 = G11.reshape(nb, I, J, I, J).permute(0, 1, 3, 2, 4)  # (B, i, l, a, b)
    rows = torch.arange(I, device=S.device).unsqueeze(1)
    blocks = G4[:, rows, op.neighbour_index()]               # (B, I, N, J, J): G_{(i,a),(k(i,n),b)}
    R = replicator_matrix(S)                                  # (B, I, J, J)
    direct = torch.einsum("xinab,xiab->xin", blocks, R) * op.mask
    K = torch.einsum("xin,xinab->xiab", op.weights, blocks)
    through_s = (torch.diagonal(K, dim1=-2, dim2=-1) - torch.einsum("xiab,xib->xia", K, S)
                 - torch.einsum("xiba,xib->xia", K, S))
    return WeightGradientTerms(direct=direct, through_s=through_s)


def data_term_gradients(system: LinearizedSystem, scaled_distances: torch.Tensor, terms: WeightGradientTerms,
                        grad_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(grad_weights ([B,] I, N), grad_scaled_distances ([B,] I, J))``: the partial gradients ``terms``
    (:math:`TG_{11}` part) and ``grad_b`` (:math:`TG_{12}`) chained through :math:`B = \frac1J\Pi_0S` and
    :math:`S = \mathrm{softmax}(-\Omega\tilde D)` for ``scaled_distances`` :math:`\tilde D = D/\rho`:

    .. math:: \partial_S = K + \tfrac1J\Pi_0\,\partial_B,\quad \partial_Z = R_S\,\partial_S,\quad
              \partial_{\omega_{in}} = \mathrm{direct}_{in} - \langle\partial_{Z_i}, \tilde D_{k(i,n)}\rangle,
              \quad \partial_{\tilde D} = -\Omega^\top\partial_Z .
    """
    S, op = system.S, system.weights
    J = S.shape[-1]
    grad_s = terms.through_s + proj_tangent(grad_b) / J
    grad_logits = replicator(S, grad_s)
    grad_w = terms.direct - op.patch_products(grad_logits, scaled_distances)
    return grad_w, -op.apply_transpose(grad_logits)


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


def exact_forward(system: LinearizedSystem, T: float) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(aug, V)``: the dense :math:`\mathcal A` ``(B, k, k)`` and :math:`V_T = [e^{\mathcal A}]_{1:IJ,k}`
    ``(B, I, J)`` of a batched system; ``I * J <= MAX_EXACT_SIZE``."""
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
    [g;0]e_k^\top)` densely (:func:`frechet_block`); the contraction terms of :math:`TG_{11}` and
    :math:`\partial_B = TG_{12}` ``(B, I, J)`` for :func:`data_term_gradients`."""
    nb, I, J = system.S.shape
    n = I * J
    b1 = torch.cat([g.reshape(nb, n).to(aug.dtype), aug.new_zeros(nb, 1)], dim=1)
    b2 = torch.zeros_like(b1)
    b2[:, n] = 1.0
    G = frechet_block(aug.transpose(1, 2), aug, b1, b2)
    return dense_terms(system, T * G[:, :n, :n]), T * G[:, :n, n].reshape(nb, I, J)


def _operators(system: LinearizedSystem):
    S = system.S
    omega, omega_t = system.weights.sparse_operator()
    flat = (-1, S.shape[-1])
    matvec = lambda U: replicator_(S, (omega @ U.reshape(flat)).view(S.shape))
    rmatvec = lambda U: (omega_t @ replicator(S, U).reshape(flat)).view(S.shape)
    return matvec, rmatvec


@dataclass
class KrylovForward:
    r"""Forward Krylov solves :math:`V_{T,b} = T\beta_bQ_{m,b}\varphi(TH_{m,b})e_1` of a batch (``tangent``
    ``(B, I, J)``) and what the backward needs: ``T2`` ``(B, m + 1, m + 1)`` float64, the Hessenberg matrices of
    :math:`\mathcal K_{m+1}(\mathcal A_b, e_k)` (zero-padded after a breakdown); ``basis`` (``None`` once
    dropped); ``hessenberg`` :math:`H_m` (to verify a recomputed basis); the requested ``m``, the reached
    ``dim`` and the per-sample ``breakdown`` flags."""

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
        T2 = torch.zeros(B.shape[0], m + 1, m + 1, dtype=torch.float64, device=B.device)
        T2[:, 1, 0] = T * fwd.beta.to(torch.float64)
        T2[:, 1:, 1:] = T * fwd.hessenberg.to(torch.float64)
        col = torch.linalg.matrix_exp(T2)[:, 1:, 0].to(B.dtype)  # T beta phi(T H) e1
        return KrylovForward(fwd.combine(col), T2, fwd if keep_basis else None, fwd.hessenberg, m, fwd.dim,
                             fwd.breakdown)


def krylov_backward(system: LinearizedSystem, fwd: KrylovForward, g: torch.Tensor, T: float, m: int,
                    rank: int) -> tuple[WeightGradientTerms, torch.Tensor, dict]:
    r"""Low-rank Theorem 3.8 (3.47) for any cotangent ``g`` ``(B, I, J)`` of :math:`V_T`, per sample:
    ``(terms, grad_b, stats)``.

    Adjoint spaces :math:`\mathcal K_m(A^{J\top}_b, g_b)`, :math:`X = \|g_b\|\,G(T_1, T_2; e_1, e_1)`;
    :math:`\partial_B = TG_{12} = T\|g_b\|P_mX_{:,0}` and :math:`TG_{11} \approx \sum_{r<\mathrm{rank}}
    x_ry_r^\top` from the SVD of :math:`X_{:,1:}`, contracted on the stencil.  Rebuilds the forward bases if
    ``fwd.basis`` is ``None`` (after the adjoint bases are freed) and releases them afterwards.  ``stats``:
    per-sample ``adjoint_dim``, ``adjoint_breakdown``, ``singular_values``, and ``rank``.
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
