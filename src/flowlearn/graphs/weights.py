r"""Weight operators :math:`\Omega` on neighbourhood graphs.

A weight operator holds one *weight patch* per node :math:`i`, a probability vector over the :math:`N` slots of its
neighbourhood :math:`\mathcal{N}_i` (``patches``, ``(I, N)``).  Slots outside the graph (beyond an image border,
padding of low-degree nodes) are masked; the effective weights are the patch renormalised over the valid slots,
:math:`\omega_{in} = m_{in}p_{in}/\sum_{n'} m_{in'}p_{in'}`, so every row of :math:`\Omega` sums to one.

Operators never form the dense :math:`I\times I` matrix: ``apply`` (row :math:`i` of :math:`\Omega X` is
:math:`\sum_n \omega_{in}X_{k(i,n)}`), ``apply_transpose``, ``patch_products`` (:math:`G_{in} = \langle U_i,
X_{k(i,n)}\rangle`, the gradient of :math:`\langle U, \Omega X\rangle` w.r.t. the effective weights) and
``grad_to_patches``.  ``apply`` and ``apply_transpose`` use the CSR matrices of :meth:`sparse_operator` (the
pattern, :class:`SparsePattern`, is built once per structure; the values are a gather of the effective weights)
unless the weights require grad under grad mode: the backward of ``csr @ dense`` with respect to the CSR values
forms a dense :math:`I\times I` gradient, so the subclass's own stencil products are used then and
:meth:`SparsePattern.matrices` refuses such weights.
"""

from __future__ import annotations

import abc
import warnings
from typing import NamedTuple

import torch

from .._checks import UserInputError, as_tensor, check_finite, check_shape

__all__ = ["SparseOmega", "SparsePattern", "WeightOperator"]


def effective_weights(patches: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    r""":math:`\omega = m\odot p/\langle m, p\rangle` row-wise (patches ``(..., I, N)``, mask ``(I, N)``)."""
    p = patches * mask
    return p / p.sum(-1, keepdim=True)


def patch_gradient(patches: torch.Tensor, mask: torch.Tensor, grad_weights: torch.Tensor) -> torch.Tensor:
    r"""Chain rule from effective weights to patches, row-wise: with :math:`\omega = m\odot p/\langle m,p\rangle`,
    :math:`\partial_p f = \frac{m}{\langle m,p\rangle}\odot(g - \langle g, \omega\rangle)` for
    :math:`g = \partial_\omega f`."""
    m = mask.to(patches.dtype)
    mass = (patches * m).sum(-1, keepdim=True)
    return m / mass * (grad_weights - (grad_weights * effective_weights(patches, mask)).sum(-1, keepdim=True))


class SparseOmega(NamedTuple):
    """:math:`\\Omega` and :math:`\\Omega^\\top` as ``(I, I)`` sparse CSR tensors."""

    omega: torch.Tensor
    omega_t: torch.Tensor


class SparsePattern:
    r"""The CSR index structure of :math:`\Omega` and :math:`\Omega^\top` for a neighbourhood structure.

    ``index`` ``(I, N)``: neighbour index :math:`k(i, n)`; ``mask`` ``(I, N)``: valid slots (masked slots get
    no entry); attribute ``nnz``: the number of stored entries.
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
        """``(Omega, Omega^T)`` with the effective weights ``weights`` ``(I, N)`` as values; a ``UserInputError``
        if they require grad under grad mode (see the module docstring)."""
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


class WeightOperator(abc.ABC):
    """Base class: a row-stochastic, neighbourhood-sparse :math:`\\Omega`.

    Subclasses provide the structure (``num_nodes``, ``patch_size``, ``mask``, ``neighbour_index``) and the
    products ``_apply``, ``_apply_transpose``, ``_patch_products`` on effective weights.
    """

    num_nodes: int
    patch_size: int
    mask: torch.Tensor  # (I, N) bool, True where slot n of node i is a real neighbour

    def _init_patches(self, patches, dtype, device) -> None:
        I, N = self.num_nodes, self.patch_size
        if patches is None:
            p = torch.full((I, N), 1.0 / N, dtype=dtype or torch.get_default_dtype(), device=device)
        else:
            p = as_tensor("patches", patches, dtype=dtype, device=device)
            if p.ndim == 1:  # one patch shared by every node
                check_shape("patches", p, (N,))
                p = p.expand(I, N).clone()
            check_shape("patches", p, (I, N))
            check_finite("patches", p)
            if bool((p < 0).any()):
                idx = tuple((p < 0).nonzero()[0].tolist())
                raise UserInputError(f"patches must be non-negative, got {p[idx].item()} at {idx}")
            sums = p.sum(-1)
            tol = 1e-4 if p.dtype == torch.float32 else 1e-8
            if bool(((sums - 1).abs() > tol).any()):
                k = int((sums - 1).abs().argmax())
                raise UserInputError("patches must be normalised (each row sums to 1), "
                                     f"got a row summing to {sums[k].item():.6g} (node {k})")
        self.mask = self.mask.to(p.device)
        eff_mass = (p * self.mask).sum(-1)
        if bool((eff_mass <= 0).any()):
            k = int((eff_mass <= 0).nonzero()[0])
            raise UserInputError(f"patches give node {k} zero weight on its valid neighbours")
        self.patches = p

    @property
    def dtype(self) -> torch.dtype:
        return self.patches.dtype

    @property
    def device(self) -> torch.device:
        return self.patches.device

    @property
    def weights(self) -> torch.Tensor:
        """Effective weights ``(I, N)``: masked and renormalised patches (zero on invalid slots)."""
        return effective_weights(self.patches, self.mask)

    def with_patches(self, patches) -> WeightOperator:
        """A copy of this operator with other patches (same neighbourhoods). Differentiable."""
        new = object.__new__(type(self))
        skip = ("patches", "mask", "_structure_cache", "_csr_values")
        new.__dict__.update({k: v for k, v in self.__dict__.items() if k not in skip})
        new.mask = self.mask
        new._structure_cache = self._shared_structure_cache()  # same neighbourhoods: same CSR pattern
        if not isinstance(patches, torch.Tensor):
            patches = as_tensor("patches", patches, dtype=self.dtype, device=self.device)
        check_shape("patches", patches, (self.num_nodes, self.patch_size))
        new.patches = patches
        return new

    def to(self, device=None, dtype=None) -> WeightOperator:
        """A copy with patches moved to ``device`` / cast to ``dtype`` (the boolean mask is only moved)."""
        new = self.with_patches(self.patches.to(device=device, dtype=dtype))
        new.mask = self.mask.to(device=device)
        return new

    def _check_x(self, name: str, x: torch.Tensor) -> None:
        if x.ndim < 1 or x.shape[0] != self.num_nodes:
            raise UserInputError(f"{name} must have {self.num_nodes} rows (one per node), got shape {tuple(x.shape)}")

    def apply(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        r""":math:`\Omega X` for ``x`` ``(I, ...)``, differentiable in ``x`` and the weights; ``weights``
        (effective, ``(I, N)``) override the operator's own."""
        return self._product(x, weights, transpose=False)

    def apply_transpose(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        r""":math:`\Omega^\top X` for ``x`` ``(I, ...)``."""
        return self._product(x, weights, transpose=True)

    def _product(self, x: torch.Tensor, weights: torch.Tensor | None, transpose: bool) -> torch.Tensor:
        self._check_x("x", x)
        if self._needs_weight_grad(weights) or x.numel() == 0:
            w = self.weights if weights is None else weights
            return self._apply_transpose(w, x) if transpose else self._apply(w, x)
        csr = self.sparse_operator(weights)
        matrix = csr.omega_t if transpose else csr.omega
        dtype = torch.result_type(x, matrix.values())
        return (matrix.to(dtype) @ x.reshape(self.num_nodes, -1).to(dtype)).reshape(x.shape)

    def _shared_structure_cache(self) -> dict:
        return self.__dict__.setdefault("_structure_cache", {})

    def sparse_pattern(self) -> SparsePattern:
        """The CSR pattern of :math:`\\Omega`, :math:`\\Omega^\\top`; built once per structure and device and
        shared by every operator derived with :meth:`with_patches` / :meth:`to`."""
        cache = self._shared_structure_cache()
        key = ("csr", str(self.device))
        if key not in cache:
            cache[key] = SparsePattern(self.neighbour_index(), self.mask.to(self.device))
        return cache[key]

    def sparse_operator(self, weights: torch.Tensor | None = None) -> SparseOmega:
        r""":math:`\Omega` and :math:`\Omega^\top` as ``(I, I)`` sparse CSR tensors, for ``weights`` (effective,
        ``(I, N)``) or the operator's own (cached until the patches change); refused for weights that require
        grad under grad mode (see the module docstring)."""
        if weights is not None:
            check_shape("weights", weights, (self.num_nodes, self.patch_size))
            return self.sparse_pattern().matrices(weights)
        if self._needs_weight_grad(None):
            return self.sparse_pattern().matrices(self.weights)  # raises
        key = (id(self.patches), self.patches._version)
        cached = self.__dict__.get("_csr_values")
        if cached is None or cached[0] != key or cached[1] is not self.patches:
            cached = self._csr_values = (key, self.patches, self.sparse_pattern().matrices(self.weights))
        return cached[2]

    def _needs_weight_grad(self, weights: torch.Tensor | None) -> bool:
        w = self.patches if weights is None else weights
        return torch.is_grad_enabled() and w.requires_grad

    def patch_products(self, u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        r""":math:`G_{in} = \langle U_i, X_{k(i,n)}\rangle = \partial_{\omega_{in}}\langle U, \Omega X\rangle`
        ``(I, N)`` (zero on invalid slots) for ``u`` and ``x`` of one shape ``(I, ...)``."""
        self._check_x("u", u)
        self._check_x("x", x)
        if u.shape != x.shape:
            raise UserInputError(f"u and x must have the same shape, got {tuple(u.shape)} and {tuple(x.shape)}")
        return self._patch_products(u, x) * self.mask

    def grad_to_patches(self, grad_weights: torch.Tensor) -> torch.Tensor:
        r"""Chain rule from effective weights to patches (:func:`patch_gradient`)."""
        check_shape("grad_weights", grad_weights, (self.num_nodes, self.patch_size))
        return patch_gradient(self.patches, self.mask, grad_weights)

    @abc.abstractmethod
    def _apply(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor: ...

    @abc.abstractmethod
    def _apply_transpose(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor: ...

    @abc.abstractmethod
    def _patch_products(self, u: torch.Tensor, x: torch.Tensor) -> torch.Tensor: ...

    @abc.abstractmethod
    def neighbour_index(self) -> torch.Tensor:
        """``(I, N)`` long tensor of neighbour node indices (arbitrary valid index on masked slots)."""

    def to_dense(self) -> torch.Tensor:
        """The dense ``(I, I)`` matrix :math:`\\Omega` -- for tests and small problems only."""
        if self.num_nodes > 20000:
            raise UserInputError(f"to_dense is for small problems, got {self.num_nodes} nodes (> 20000)")
        idx = self.neighbour_index()
        dense = torch.zeros(self.num_nodes, self.num_nodes, dtype=self.dtype, device=self.device)
        rows = torch.arange(self.num_nodes, device=self.device).unsqueeze(1).expand_as(idx)
        dense.index_put_((rows[self.mask], idx[self.mask]), self.weights[self.mask], accumulate=True)
        return dense

    def to_scipy(self):
        """:math:`\\Omega` as a ``scipy.sparse.csr_array`` (float64)."""
        import numpy as np
        import scipy.sparse as sp

        idx = self.neighbour_index().cpu().numpy()
        mask = self.mask.cpu().numpy()
        rows = np.broadcast_to(np.arange(self.num_nodes)[:, None], idx.shape)
        vals = self.weights.detach().cpu().double().numpy()
        return sp.csr_array((vals[mask], (rows[mask], idx[mask])), shape=(self.num_nodes, self.num_nodes))
