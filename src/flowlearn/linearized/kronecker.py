r"""Fréchet derivative of ``expm`` as a :math:`\varphi` of a Kronecker sum, and its Krylov low-rank form.

Conventions (paper 000, eqs. (2.1)--(2.3)): :math:`\mathrm{vec}_r` stacks *rows*, so
:math:`\mathrm{vec}_r(PZQ) = (P\otimes Q^\top)\,\mathrm{vec}_r(Z)`, and the Kronecker sum is
:math:`M_1\oplus M_2 = M_1\otimes I + I\otimes M_2`, i.e.
:math:`(M_1\oplus M_2)\,\mathrm{vec}_r(Z) = \mathrm{vec}_r(M_1Z + ZM_2^\top)`.

The object needed by the gradient (Theorem 3.8) is

.. math:: G(M_1, M_2; b_1, b_2) = \int_0^1 e^{sM_1}\,b_1b_2^\top\,e^{(1-s)M_2^\top}\,ds ,

with :math:`M_1 = \mathcal A^\top`, :math:`M_2 = \mathcal A`, :math:`b_1 = (\partial f_L, 0)`,
:math:`b_2 = e_{k+1}`; then :math:`G = L_{\exp}(\mathcal A^\top, b_1b_2^\top)` is the adjoint of the
Fréchet derivative of ``expm`` at :math:`\mathcal A` applied to the rank-one matrix
:math:`b_1b_2^\top` (Higham, *Functions of Matrices*, Thm 10.13 and eq. (10.15)).  Because
:math:`e^{sM_1}\otimes e^{(1-s)M_2} = (I\otimes e^{M_2})\exp\!\big(s\,(M_1\oplus(-M_2))\big)`,

.. math:: \mathrm{vec}_r(G) = (I\otimes e^{M_2})\;\varphi\big(M_1\oplus(-M_2)\big)\,(b_1\otimes b_2),
          \qquad \varphi(z) = \frac{e^z-1}{z},

the form (3.36) :math:`f(M_1\oplus M_2)(b_1\otimes b_2)`.  Three evaluations are provided:

* :func:`frechet_kronecker` -- literally the formula above with a dense :math:`k^2\times k^2` Kronecker
  sum (tiny problems; it pins the row-stacking convention down in the tests);
* :func:`frechet_block` -- the same :math:`G` as the upper-right block of
  :math:`\exp\begin{psmallmatrix}M_1 & b_1b_2^\top\\ 0 & M_2^\top\end{psmallmatrix}` (Van Loan 1978),
  size :math:`2k`: the ``exact`` gradient;
* :func:`benzi_simoncini` -- Arnoldi bases :math:`P_m, Q_m` and Hessenberg matrices :math:`T_1, T_2` of
  :math:`\mathcal K_m(M_1, b_1)`, :math:`\mathcal K_m(M_2, b_2)` give (3.42)
  :math:`G \approx \|b_1\|\|b_2\|\,P_m X Q_m^\top` with the small
  :math:`X = G(T_1, T_2; e_1, e_1)`, and :func:`truncate` keeps the leading singular triplets
  (3.45)--(3.47).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._checks import UserInputError

__all__ = ["LowRankFactors", "benzi_simoncini", "frechet_block", "frechet_kronecker", "kronecker_sum",
           "phi_dense", "truncate"]


def kronecker_sum(M1: torch.Tensor, M2: torch.Tensor) -> torch.Tensor:
    r""":math:`M_1\oplus M_2 = M_1\otimes I_{n_2} + I_{n_1}\otimes M_2` (row-stacking convention)."""
    n1, n2 = M1.shape[0], M2.shape[0]
    M1, M2 = M1.contiguous(), M2.contiguous()
    I1 = torch.eye(n1, dtype=M1.dtype, device=M1.device)
    I2 = torch.eye(n2, dtype=M2.dtype, device=M2.device)
    return torch.kron(M1, I2) + torch.kron(I1, M2)


def phi_dense(M: torch.Tensor) -> torch.Tensor:
    r"""Dense :math:`\varphi(M) = \sum_{j\ge0} M^j/(j+1)!`: the upper-right block of
    :math:`\exp\begin{psmallmatrix}M & I\\0&0\end{psmallmatrix}` (Higham 2008, §10.7.4)."""
    n = M.shape[0]
    aug = torch.zeros(2 * n, 2 * n, dtype=M.dtype, device=M.device)
    aug[:n, :n] = M
    aug[:n, n:] = torch.eye(n, dtype=M.dtype, device=M.device)
    return torch.linalg.matrix_exp(aug)[:n, n:]


def frechet_kronecker(M1: torch.Tensor, M2: torch.Tensor, b1: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    r""":math:`G = \mathrm{vec}_r^{-1}\big[(I\otimes e^{M_2})\,\varphi(M_1\oplus(-M_2))\,(b_1\otimes b_2)\big]`.

    Forms the dense :math:`n_1n_2\times n_1n_2` Kronecker sum -- a reference for tiny sizes only
    (``n1 * n2 <= 4096``).  Returns ``(n1, n2)``.
    """
    n1, n2 = M1.shape[0], M2.shape[0]
    if n1 * n2 > 4096:
        raise UserInputError(f"frechet_kronecker forms a dense (n1*n2)^2 matrix; got n1*n2 = {n1 * n2} (> 4096)")
    K = kronecker_sum(M1, -M2)
    I1 = torch.eye(n1, dtype=M1.dtype, device=M1.device)
    vec = torch.kron(I1, torch.linalg.matrix_exp(M2)) @ (phi_dense(K) @ torch.kron(b1, b2))
    return vec.reshape(n1, n2)


def frechet_block(M1: torch.Tensor, M2: torch.Tensor, b1: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    r""":math:`G = \int_0^1 e^{sM_1}b_1b_2^\top e^{(1-s)M_2^\top}ds`, the upper-right block of
    :math:`\exp\begin{psmallmatrix}M_1 & b_1b_2^\top\\0 & M_2^\top\end{psmallmatrix}`.

    ``M1`` ``(..., n1, n1)``, ``M2`` ``(..., n2, n2)``, ``b1`` ``(..., n1)``, ``b2`` ``(..., n2)`` (leading
    batch dimensions broadcast); returns ``(..., n1, n2)``.  Equal to :func:`frechet_kronecker` (proved by
    the tests) at the cost of one exponential of size ``n1 + n2``.
    """
    n1, n2 = M1.shape[-1], M2.shape[-1]
    lead = torch.broadcast_shapes(M1.shape[:-2], M2.shape[:-2], b1.shape[:-1], b2.shape[:-1])
    aug = torch.zeros(*lead, n1 + n2, n1 + n2, dtype=M1.dtype, device=M1.device)
    aug[..., :n1, :n1] = M1
    aug[..., :n1, n1:] = b1.unsqueeze(-1) * b2.unsqueeze(-2)
    aug[..., n1:, n1:] = M2.transpose(-1, -2)
    return torch.linalg.matrix_exp(aug)[..., :n1, n1:]


def benzi_simoncini(T1: torch.Tensor, T2: torch.Tensor) -> torch.Tensor:
    r"""The small matrix of the Benzi--Simoncini approximation (3.42), shape ``(..., m1, m2)``.

    :math:`X = \mathrm{vec}_r^{-1}\big[(I\otimes e^{T_2})\varphi(T_1\oplus(-T_2))(e_1\otimes e_1)\big]`,
    computed in float64 by :func:`frechet_block` (leading batch dimensions allowed).
    """
    dt = torch.float64
    e1 = torch.zeros(T1.shape[-1], dtype=dt, device=T1.device)
    e2 = torch.zeros(T2.shape[-1], dtype=dt, device=T2.device)
    e1[0] = 1.0
    e2[0] = 1.0
    return frechet_block(T1.to(dt), T2.to(dt), e1, e2).to(T1.dtype)


@dataclass
class LowRankFactors:
    r"""Truncated SVD :math:`X \approx \sum_{r<R}\sigma_r y_r z_r^\top` (3.45), per leading batch index.

    Attributes
    ----------
    left : tensor ``(..., m1, R)``
        Columns :math:`\sigma_r y_r`.
    right : tensor ``(..., m2, R)``
        Columns :math:`z_r`.
    singular_values : tensor ``(..., min(m1, m2))``
        All singular values of :math:`X` (for the rank study, Fig. 4b).
    """

    left: torch.Tensor
    right: torch.Tensor
    singular_values: torch.Tensor

    @property
    def rank(self) -> int:
        return self.left.shape[-1]


def truncate(X: torch.Tensor, rank: int) -> LowRankFactors:
    """Rank-``rank`` truncation of ``X`` ``(..., m1, m2)`` by the SVD (``rank`` larger than ``min(m1, m2)``
    keeps all)."""
    U, s, Vh = torch.linalg.svd(X, full_matrices=False)
    r = min(rank, s.shape[-1])
    return LowRankFactors(left=U[..., :r] * s[..., None, :r], right=Vh[..., :r, :].transpose(-1, -2),
                          singular_values=s)
