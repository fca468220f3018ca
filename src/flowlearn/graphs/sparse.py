r"""Compressed-sparse-row forms of a weight operator: :math:`\Omega` and :math:`\Omega^\top` as CSR matrices.

The pattern -- one entry per *valid* slot :math:`(i, k(i,n))`, masked slots dropped, columns sorted in
every row -- depends only on the neighbourhood structure and is built once
(:class:`SparsePattern`); the values are a gather of the effective weights ``(I, N)``.  One product
:math:`\Omega X` is then a single sparse-times-dense kernel instead of :math:`N` shifted updates
(:math:`\approx 2\times` faster for a 512x512 grid, 3x3, :math:`J = 10`, float64, on 2 CPU cores).

Autograd: the product is differentiable with respect to :math:`X`, but in torch 2.13 the backward of
``csr @ dense`` with respect to the CSR *values* forms a dense :math:`I\times I` gradient (550 GB for a
512x512 grid), so :meth:`SparsePattern.matrices` refuses weights that require grad; the weight operator
then keeps its stencil products (see :meth:`flowlearn.graphs.WeightOperator.apply`).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch

from .._checks import UserInputError

__all__ = ["SparseOmega", "SparsePattern"]


class SparseOmega(NamedTuple):
    """:math:`\\Omega` and :math:`\\Omega^\\top` as ``(I, I)`` sparse CSR tensors."""

    omega: torch.Tensor
    omega_t: torch.Tensor


class SparsePattern:
    r"""The CSR index structure of :math:`\Omega` and :math:`\Omega^\top` for a neighbourhood structure.

    Parameters
    ----------
    index : long tensor ``(I, N)``
        Neighbour index :math:`k(i, n)`.
    mask : bool tensor ``(I, N)``
        Valid slots; masked slots get no entry.

    Attributes
    ----------
    nnz : int
        Number of stored entries (valid slots).
    """

    def __init__(self, index: torch.Tensor, mask: torch.Tensor):
        I, N = index.shape
        self.size, self.width = I, N
        slot = mask.reshape(-1).nonzero().squeeze(1)                  # flat slot i*N + n of each entry
        self.nnz = int(slot.numel())
        itype = torch.int32 if max(self.nnz, I * N) < 2**31 - 1 else torch.int64
        slot = slot.to(itype)
        rows, cols = slot // N, index.reshape(-1)[slot].to(itype)
        # rows ascend with the slot; grids (offsets in lexicographic order) have ascending columns in every row
        # too, so Omega's CSR order is the slot order and needs no sort
        if self.nnz > 1 and not bool(((cols[1:] > cols[:-1]) | (rows[1:] != rows[:-1])).all()):
            by_row = torch.argsort(rows.long() * I + cols)
            slot, rows, cols = slot[by_row], rows[by_row], cols[by_row]
        self._slots, self._col = slot, cols
        by_col = torch.sort(cols, stable=True).indices                 # (col, row) order: Omega^T's CSR order
        self._slots_t, self._col_t = slot[by_col], rows[by_col]
        del by_col
        zero = torch.zeros(1, dtype=itype, device=index.device)
        self._crow = torch.cat([zero, torch.cumsum(torch.bincount(rows, minlength=I), 0).to(itype)])
        self._crow_t = torch.cat([zero, torch.cumsum(torch.bincount(cols, minlength=I), 0).to(itype)])

    def tile(self, copies: int) -> "SparsePattern":
        r"""The pattern of the block-diagonal :math:`\mathrm{Diag}(\Omega, \dots, \Omega)` (``copies`` blocks),
        for weights ``(copies * I, N)``; built by offsetting this pattern, without sorting."""
        new = object.__new__(SparsePattern)
        I, N, nnz = self.size, self.width, self.nnz
        new.size, new.width, new.nnz = copies * I, N, copies * nnz
        itype = torch.int32 if max(new.nnz, new.size * N) < 2**31 - 1 else torch.int64
        b = torch.arange(copies, dtype=itype, device=self._col.device).unsqueeze(1)
        tiled = lambda x, step: (x.to(itype).unsqueeze(0) + b * step).reshape(-1)
        new._slots, new._slots_t = tiled(self._slots, I * N), tiled(self._slots_t, I * N)
        new._col, new._col_t = tiled(self._col, I), tiled(self._col_t, I)
        end = torch.tensor([new.nnz], dtype=itype, device=self._col.device)
        new._crow = torch.cat([tiled(self._crow[:-1], nnz), end])
        new._crow_t = torch.cat([tiled(self._crow_t[:-1], nnz), end])
        return new

    def matrices(self, weights: torch.Tensor) -> SparseOmega:
        """``(Omega, Omega^T)`` with the effective weights ``weights`` ``(I, N)`` as values.

        Raises
        ------
        ValueError
            If ``weights`` require grad while grad mode is on (see the module docstring).
        """
        if weights.requires_grad and torch.is_grad_enabled():
            raise UserInputError("sparse CSR products are not differentiable with respect to the weights in "
                             "practice (the backward forms a dense I x I matrix); got weights that require "
                             "grad -- use WeightOperator.apply / apply_transpose")
        if weights.shape[0] != self.size:
            raise UserInputError(f"weights must have {self.size} rows, got shape {tuple(weights.shape)}")
        vals = weights.reshape(-1)
        shape = (self.size, self.size)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": the kernels used here are stable
            warnings.simplefilter("ignore", UserWarning)
            omega = torch.sparse_csr_tensor(self._crow, self._col, vals.index_select(0, self._slots),
                                            size=shape, check_invariants=False)
            omega_t = torch.sparse_csr_tensor(self._crow_t, self._col_t, vals.index_select(0, self._slots_t),
                                              size=shape, check_invariants=False)
        return SparseOmega(omega, omega_t)
