r"""A batch of weight operators on one neighbourhood structure: :math:`\Omega_b X_b` for every sample at once.

The batch acts as the block-diagonal :math:`\mathrm{Diag}(\Omega_1, \dots, \Omega_B)` on tensors ``(B, I, ...)``:
without gradients w.r.t. the weights as one block-diagonal CSR matrix (one sparse kernel for the batch); when
the weights require grad under grad mode by gathering the neighbours and scatter-adding for the transpose,
which autograd differentiates.  Effective weights and the chain rule to the patches follow
:class:`~flowlearn.graphs.WeightOperator` row by row.
"""

from __future__ import annotations

import torch

from .._checks import UserInputError
from .weights import SparseOmega, WeightOperator, effective_weights, patch_gradient

__all__ = ["BatchWeights"]


class BatchWeights:
    r"""Weight patches ``(B, I, N)`` on the neighbourhoods of ``structure`` (whose own patches are ignored).

    ``patches`` ``(B, I, N)``: non-negative rows summing to one, renormalised over the valid slots of each node.
    """

    def __init__(self, structure: WeightOperator, patches: torch.Tensor):
        if not isinstance(structure, WeightOperator):
            raise UserInputError(f"structure must be a WeightOperator, got {type(structure).__name__}")
        I, N = structure.num_nodes, structure.patch_size
        if patches.ndim != 3 or tuple(patches.shape[1:]) != (I, N):
            raise UserInputError(f"patches must have shape (B, {I}, {N}), got {tuple(patches.shape)}")
        self.structure, self.patches = structure, patches
        self.mask = structure.mask.to(patches.device)
        self.num_nodes, self.patch_size, self.batch_size = I, N, patches.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.patches.dtype

    @property
    def device(self) -> torch.device:
        return self.patches.device

    @property
    def weights(self) -> torch.Tensor:
        """Effective weights ``(B, I, N)``: masked, renormalised patches (cached while the patches are unchanged
        and no gradient is recorded)."""
        key = (self.patches._version, torch.is_grad_enabled() and self.patches.requires_grad)
        cached = self.__dict__.get("_weights")
        if cached is not None and cached[0] == key and not key[1]:
            return cached[1]
        w = effective_weights(self.patches, self.mask)
        self._weights = (key, w)
        return w

    def neighbour_index(self) -> torch.Tensor:
        """``(I, N)`` neighbour indices of the structure."""
        cache = self.structure._shared_structure_cache()
        key = ("index", str(self.device))
        if key not in cache:
            cache[key] = self.structure.neighbour_index().to(self.device)
        return cache[key]

    def _check_x(self, name: str, x: torch.Tensor) -> None:
        if x.ndim < 2 or tuple(x.shape[:2]) != (self.batch_size, self.num_nodes):
            raise UserInputError(f"{name} must have shape ({self.batch_size}, {self.num_nodes}, ...), "
                                 f"got {tuple(x.shape)}")

    def sparse_operator(self) -> SparseOmega:
        r"""Block-diagonal :math:`\Omega` and :math:`\Omega^\top` as ``(B I, B I)`` CSR matrices (no grad)."""
        cache = self.structure._shared_structure_cache()
        key = ("batch-csr", self.batch_size, str(self.device))
        if key not in cache:
            single = self.structure.to(device=self.device).sparse_pattern()
            cache[key] = single if self.batch_size == 1 else single.tile(self.batch_size)
        return cache[key].matrices(self.weights.reshape(self.batch_size * self.num_nodes, -1))

    def _gather(self, x: torch.Tensor, slot: int) -> torch.Tensor:
        """``X_{b, k(i, n)}`` for one slot ``n``: shape ``(B, I, ...)``."""
        return x.index_select(1, self.neighbour_index()[:, slot])

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\Omega_b X_b` for ``x`` ``(B, I, ...)``; differentiable in ``x`` (and in the patches)."""
        return self._product(x, transpose=False)

    def apply_transpose(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\Omega_b^\top X_b` for ``x`` ``(B, I, ...)``."""
        return self._product(x, transpose=True)

    def _product(self, x: torch.Tensor, transpose: bool) -> torch.Tensor:
        self._check_x("x", x)
        if not (torch.is_grad_enabled() and self.patches.requires_grad):
            key = (id(self.patches), self.patches._version)
            cached = self.__dict__.get("_csr")
            if cached is None or cached[0] != key:
                cached = self._csr = (key, self.sparse_operator())
            matrix = cached[1].omega_t if transpose else cached[1].omega
            xf = x.reshape(self.batch_size * self.num_nodes, -1)
            return (matrix @ xf.to(matrix.dtype)).reshape(x.shape)
        w = self.weights.reshape(self.weights.shape + (1,) * (x.ndim - 2))
        if not transpose:
            return sum(w[:, :, n] * self._gather(x, n) for n in range(self.patch_size))
        index = self.neighbour_index()
        out = torch.zeros_like(x, dtype=torch.result_type(x, w))
        for n in range(self.patch_size):
            out = out.index_add(1, index[:, n], w[:, :, n] * x)
        return out

    def patch_products(self, u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        r""":math:`G_{bin} = \langle U_{bi}, X_{b,k(i,n)}\rangle` ``(B, I, N)``, zero on invalid slots."""
        self._check_x("u", u)
        self._check_x("x", x)
        dims = tuple(range(2, u.ndim))
        x = x.contiguous()
        cols = [(u * self._gather(x, n)).sum(dims) for n in range(self.patch_size)]
        return torch.stack(cols, -1) * self.mask

    def grad_to_patches(self, grad_weights: torch.Tensor) -> torch.Tensor:
        """Chain rule from effective weights to patches (:func:`~flowlearn.graphs.weights.patch_gradient`)."""
        return patch_gradient(self.patches, self.mask, grad_weights)

    def to_dense(self) -> torch.Tensor:
        """Dense ``(B, I, I)`` matrices :math:`\\Omega_b` -- tests and small problems only."""
        I = self.num_nodes
        if I > 20000:
            raise UserInputError(f"to_dense is for small problems, got {I} nodes (> 20000)")
        index, w = self.neighbour_index(), self.weights * self.mask
        flat = (torch.arange(I, device=self.device).unsqueeze(1) * I + index).reshape(-1)
        dense = torch.zeros(self.batch_size, I * I, dtype=self.dtype, device=self.device)
        return dense.index_add(1, flat, w.reshape(self.batch_size, -1)).reshape(self.batch_size, I, I)
