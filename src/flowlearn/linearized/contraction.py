r"""Closed-form contraction of the gradient matrix with :math:`\partial\mathcal A/\partial\Omega` (M1--M4).

Theorem 3.8 reduces :math:`\langle\partial f_L, dv_T\rangle` to
:math:`\langle G, d\mathcal A\rangle = T\langle G_{11}, dA^J\rangle + T\langle G_{12}, db\rangle`
with :math:`G` from :mod:`flowlearn.linearized.kronecker`.  With :math:`S = S_0 =
\mathrm{softmax}(Z)`, :math:`Z = -\Omega D/\rho` (M1), :math:`A^J = \mathrm{Diag}(R_S)(\Omega\otimes I_J)`
(M3), :math:`b = \mathrm{vec}_r(\frac1J\Pi_0S)` (M2), i.e.
:math:`A^J_{(i,a),(l,b)} = \Omega_{il}\,(R_{S_i})_{ab}`, the pieces are

* direct dependence on :math:`\Omega` (only on the sparsity pattern :math:`l\in\mathcal N_i`):
  :math:`\partial_{\omega_{in}} = \sum_{a,b}(R_{S_i})_{ab}\,(G_{11})_{(i,a),(k(i,n),b)}`;
* dependence through :math:`S_i`: with :math:`K_i = \sum_l\Omega_{il}(G_{11})_{(i,\cdot),(l,\cdot)}`
  (:math:`J\times J`), :math:`\partial_{S_i}\langle K_i, R_{S_i}\rangle = \mathrm{diag}(K_i) - K_iS_i - K_i^\top S_i`
  (Lemma 3.4), plus :math:`\frac1J\Pi_0 G_{12}` from :math:`b` (Lemma 3.3);
* softmax (Lemma 3.2): :math:`\partial_Z = R_S\,\partial_S`, and
  :math:`\partial_{\omega_{in}} \mathrel{-}= \langle \partial_{Z_i}, (D/\rho)_{k(i,n)}\rangle`.

For a low-rank :math:`G_{11} = \sum_r x_ry_r^\top` (``([B,] I, J)`` matrices :math:`X_r, Y_r`) everything is
computed from :math:`X_r, Y_r, \Omega Y_r` on the stencil -- :math:`O(IJN)` work, never a
:math:`k\times k` matrix.  Result: gradient with respect to the *effective* weights ``([B,] I, N)``; use
:meth:`~flowlearn.graphs.WeightOperator.grad_to_patches` for the patches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..geometry import proj_tangent, replicator
from ..geometry.simplex import replicator_matrix
from .system import LinearizedSystem

__all__ = ["WeightGradientTerms", "bilinear_terms", "data_term_gradients", "dense_terms"]


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
    r"""Chain the partial gradients through :math:`B = \frac1J\Pi_0S` and :math:`S = \mathrm{softmax}(Z)`,
    :math:`Z = -\Omega\tilde D`, :math:`\tilde D = D/\rho`, to both inputs of the data term.

    .. math:: \partial_S = K + \tfrac1J\Pi_0\,\partial_B,\quad \partial_Z = R_S\,\partial_S,\quad
              \partial_{\omega_{in}} = \mathrm{direct}_{in} - \langle\partial_{Z_i}, \tilde D_{k(i,n)}\rangle,
              \quad \partial_{\tilde D} = -\Omega^\top\partial_Z .

    Parameters
    ----------
    system : LinearizedSystem
        Holds :math:`S` ``([B,] I, J)`` and the weights.
    scaled_distances : tensor ``([B,] I, J)``
        :math:`\tilde D = D/\rho` (any real matrix, e.g. :math:`D/\rho - \log W` at a linearization point).
    terms : WeightGradientTerms
        From :func:`dense_terms` or a sum of :func:`bilinear_terms` (:math:`T G_{11}` part).
    grad_b : tensor ``([B,] I, J)``
        Gradient with respect to :math:`B` (:math:`T G_{12}` reshaped).

    Returns
    -------
    (grad_weights, grad_scaled_distances) : tensors ``([B,] I, N)`` and ``([B,] I, J)``
        Gradients w.r.t. the effective weights and w.r.t. :math:`\tilde D` (divide by :math:`\rho`
        for :math:`D`).
    """
    S, op = system.S, system.weights
    J = S.shape[-1]
    grad_s = terms.through_s + proj_tangent(grad_b) / J
    grad_logits = replicator(S, grad_s)
    grad_w = terms.direct - op.patch_products(grad_logits, scaled_distances)
    return grad_w, -op.apply_transpose(grad_logits)
