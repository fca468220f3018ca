r"""Memory-lean, no-autograd Krylov kernels for the ``lowrank`` gradient.

* :class:`SparseStencil` -- :math:`\Omega` and :math:`\Omega^\top` as CSR matrices built from the
  effective weights of a :class:`~flowlearn.graphs.WeightOperator` (``N`` entries per row, masked slots
  carry zero weight), so one product is a single sparse-times-dense kernel instead of ``N`` shifted
  updates.  The transposed pattern is computed once per neighbourhood structure and cached.
* :func:`block_arnoldi` -- Arnoldi with classical Gram--Schmidt and selective re-orthogonalisation
  on a preallocated ``(m, n)`` basis block: two matrix--vector products per pass instead of
  :math:`O(j)` vector updates, and exactly :math:`mn` numbers of storage.  It spans the same space
  and yields the same Hessenberg matrix as :func:`flowlearn.solvers.arnoldi` (checked by the tests).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from .._checks import check_int
from ..graphs import WeightOperator

__all__ = ["BlockArnoldi", "SparseStencil", "block_arnoldi"]

#: Re-orthogonalise when the norm drops below this fraction by the projection.  A single classical
#: Gram--Schmidt pass loses orthogonality like eps * ||w_in|| / ||w_out||, so with a drop of at most 10x
#: one pass keeps the basis orthonormal to ~1e-15 (float64); the classic DGKS value 1/sqrt(2) would
#: re-orthogonalise every step of these Krylov spaces (typical drop ~0.5) and double the cost.
REORTH_THRESHOLD = 0.1


class SparseStencil:
    r"""CSR forms of :math:`\Omega` (``I x I``) and :math:`\Omega^\top` for given effective weights ``(I, N)``."""

    def __init__(self, structure: WeightOperator):
        idx = structure.neighbour_index().reshape(-1)
        I, N = structure.num_nodes, structure.patch_size
        self.size = I
        self.crow = torch.arange(0, N * I + 1, N, device=idx.device)
        self.col = idx
        rows = torch.arange(I, device=idx.device).repeat_interleave(N)
        order = torch.argsort(idx * I + rows)               # entries sorted by (column, row)
        self.perm = order                                   # values of Omega^T in CSR order
        self.col_t = rows[order]
        self.crow_t = torch.cat([idx.new_zeros(1), torch.cumsum(torch.bincount(idx, minlength=I), 0)])

    def matrices(self, weights: torch.Tensor):
        """``(Omega, Omega^T)`` as sparse CSR tensors with the values ``weights`` ``(I, N)``."""
        vals = weights.reshape(-1)
        shape = (self.size, self.size)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": the kernels used here are stable
            warnings.simplefilter("ignore", UserWarning)
            omega = torch.sparse_csr_tensor(self.crow, self.col, vals, size=shape, check_invariants=False)
            omega_t = torch.sparse_csr_tensor(self.crow_t, self.col_t, vals[self.perm], size=shape,
                                              check_invariants=False)
        return omega, omega_t


@dataclass
class BlockArnoldi:
    """Orthonormal basis ``basis`` ``(m, *shape)`` (rows), Hessenberg ``hessenberg`` ``(m, m)``, ``beta``,
    ``breakdown``; :meth:`combine` forms :math:`Q_m c`."""

    basis: torch.Tensor
    hessenberg: torch.Tensor
    beta: torch.Tensor
    breakdown: bool

    @property
    def dim(self) -> int:
        return self.basis.shape[0]

    def combine(self, coeffs: torch.Tensor) -> torch.Tensor:
        flat = self.basis.reshape(self.dim, -1)
        return (coeffs.to(flat.dtype) @ flat).reshape(self.basis.shape[1:])


def block_arnoldi(matvec, v: torch.Tensor, m: int, *, breakdown_tol: float | None = None) -> BlockArnoldi:
    r"""Arnoldi (CGS2) on :math:`(A, v)` with a preallocated basis; see the module docstring.

    ``matvec`` maps tensors of ``v``'s shape to the same shape.  Raises ``ValueError`` for ``v = 0``.
    """
    m = check_int("m", m, minimum=1)
    tol = 100 * torch.finfo(v.dtype).eps if breakdown_tol is None else breakdown_tol
    n = v.numel()
    beta = torch.linalg.vector_norm(v)
    if float(beta) == 0.0:
        raise ValueError("block_arnoldi needs a non-zero start vector v")
    Q = torch.empty(m, n, dtype=v.dtype, device=v.device)
    Q[0] = v.reshape(-1) / beta
    H = torch.zeros(m + 1, m, dtype=v.dtype, device=v.device)
    k, breakdown = m, False
    for j in range(m):
        w = matvec(Q[j].view(v.shape)).reshape(-1)
        norm_in = torch.linalg.vector_norm(w)
        h = Q[: j + 1] @ w
        w = w - Q[: j + 1].T @ h
        norm_w = torch.linalg.vector_norm(w)
        if float(norm_w) < REORTH_THRESHOLD * float(norm_in):
            h2 = Q[: j + 1] @ w
            w = w - Q[: j + 1].T @ h2
            h = h + h2
            norm_w = torch.linalg.vector_norm(w)
        H[: j + 1, j] = h
        H[j + 1, j] = norm_w
        if float(norm_w) <= tol * max(float(norm_in), torch.finfo(v.dtype).tiny):
            k, breakdown = j + 1, True
            break
        if j + 1 < m:
            Q[j + 1] = w / norm_w
    basis = Q[:k].view(k, *v.shape)
    return BlockArnoldi(basis=basis, hessenberg=H[:k, :k], beta=beta, breakdown=breakdown)
