r"""Weight operators :math:`\Omega` on neighbourhood graphs.

A weight operator holds one *weight patch* per node :math:`i`: a probability vector
over the :math:`N` slots of its neighbourhood :math:`\mathcal{N}_i`
(``patches``, shape ``(I, N)``). Slots that fall outside the graph (beyond an
image border, or padding of low-degree graph nodes) are masked; the effective
weights are the patch renormalised over the valid slots,

.. math:: \omega_{in} = \frac{m_{in}\,p_{in}}{\sum_{n'} m_{in'}p_{in'}},

so every row of :math:`\Omega` is positive on :math:`\mathcal{N}_i` and sums to one.
Inside an image the effective weights equal the patch.

Operators act on matrices :math:`X\in\mathbb{R}^{I\times\cdots}` (any trailing
shape) without ever forming the dense :math:`I\times I` matrix:

* :meth:`WeightOperator.apply`: :math:`\Omega X`, row :math:`i` is :math:`\sum_n \omega_{in}X_{k(i,n)}`;
* :meth:`WeightOperator.apply_transpose`: :math:`\Omega^\top X`;
* :meth:`WeightOperator.patch_products`: :math:`G_{in} = \langle U_i, X_{k(i,n)}\rangle`, the
  Euclidean gradient of :math:`\langle U, \Omega X\rangle` with respect to the effective weights;
* :meth:`WeightOperator.grad_to_patches`: chain rule from effective weights to patches;
* :meth:`WeightOperator.sparse_operator`: :math:`\Omega` and :math:`\Omega^\top` as sparse CSR matrices
  (see :mod:`flowlearn.graphs.sparse`).

``apply`` and ``apply_transpose`` multiply with the CSR matrices (one sparse kernel, the pattern cached per
neighbourhood structure) unless the weights require grad under grad mode, where the subclass's own
products (shifted slices / gather--scatter), which autograd differentiates cheaply, are used.
"""

from __future__ import annotations

import abc

import torch

from .._checks import UserInputError, as_tensor, check_finite, check_shape
from .sparse import SparseOmega, SparsePattern

__all__ = ["WeightOperator"]


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


class WeightOperator(abc.ABC):
    """Base class: a row-stochastic, neighbourhood-sparse :math:`\\Omega`.

    Subclasses provide the neighbourhood structure (``num_nodes``, ``patch_size``,
    ``mask``) and the three products ``_apply``, ``_apply_transpose``,
    ``_patch_products`` on effective weights.
    """

    num_nodes: int
    patch_size: int
    mask: torch.Tensor  # (I, N) bool, True where slot n of node i is a real neighbour

    # ------------------------------------------------------------------ weights
    def _init_patches(self, patches, dtype, device) -> None:
        I, N = self.num_nodes, self.patch_size
        if patches is None:
            dtype = dtype or torch.get_default_dtype()
            p = torch.full((I, N), 1.0 / N, dtype=dtype, device=device)
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
                raise UserInputError(
                    "patches must be normalised (each row sums to 1), "
                    f"got a row summing to {sums[k].item():.6g} (node {k})"
                )
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
        new = self._copy_structure()
        new.mask = self.mask
        new._structure_cache = self._shared_structure_cache()  # same neighbourhoods: same CSR pattern
        p = patches
        if not isinstance(p, torch.Tensor):
            p = as_tensor("patches", p, dtype=self.dtype, device=self.device)
        check_shape("patches", p, (self.num_nodes, self.patch_size))
        new.patches = p
        return new

    def to(self, device=None, dtype=None) -> WeightOperator:
        """A copy with patches moved to ``device`` / cast to ``dtype`` (the boolean mask is only moved)."""
        new = self.with_patches(self.patches.to(device=device, dtype=dtype))
        new.mask = self.mask.to(device=device)
        return new

    @abc.abstractmethod
    def _copy_structure(self) -> WeightOperator:
        """A new operator sharing the structure but not the patches."""

    # --------------------------------------------------------------- products
    def _check_x(self, name: str, x: torch.Tensor) -> None:
        if x.ndim < 1 or x.shape[0] != self.num_nodes:
            raise UserInputError(
                f"{name} must have {self.num_nodes} rows (one per node), got shape {tuple(x.shape)}"
            )

    def apply(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        r""":math:`\Omega X`. ``x``: shape ``(I, ...)``; returns the same shape.

        ``weights`` (effective, ``(I, N)``) override the operator's own, e.g. to
        differentiate with respect to them.  Differentiable in ``x`` and in the weights.
        """
        self._check_x("x", x)
        if self._needs_weight_grad(weights) or x.numel() == 0:
            return self._apply(self.weights if weights is None else weights, x)
        return self._sparse_product(self.sparse_operator(weights).omega, x)

    def apply_transpose(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        r""":math:`\Omega^\top X`. ``x``: shape ``(I, ...)``; returns the same shape."""
        self._check_x("x", x)
        if self._needs_weight_grad(weights) or x.numel() == 0:
            return self._apply_transpose(self.weights if weights is None else weights, x)
        return self._sparse_product(self.sparse_operator(weights).omega_t, x)

    # ------------------------------------------------------------ sparse CSR
    def _shared_structure_cache(self) -> dict:
        cache = self.__dict__.get("_structure_cache")
        if cache is None:
            cache = self._structure_cache = {}
        return cache

    def sparse_pattern(self) -> SparsePattern:
        """The CSR pattern of :math:`\\Omega`, :math:`\\Omega^\\top`; built once per structure and device and
        shared by every operator derived with :meth:`with_patches` / :meth:`to`."""
        cache = self._shared_structure_cache()
        key = ("csr", str(self.device))
        if key not in cache:
            cache[key] = SparsePattern(self.neighbour_index(), self.mask.to(self.device))
        return cache[key]

    def sparse_operator(self, weights: torch.Tensor | None = None) -> SparseOmega:
        r"""``(omega, omega_t)``: :math:`\Omega` and :math:`\Omega^\top` as ``(I, I)`` sparse CSR tensors.

        ``weights`` (effective, ``(I, N)``) default to the operator's own; the matrices for those are
        cached until the patches change.  Products with them are differentiable in the dense factor only.

        Raises
        ------
        ValueError
            If the weights require grad under grad mode (CSR backward w.r.t. values is dense, ``I x I``).
        """
        if weights is not None:
            check_shape("weights", weights, (self.num_nodes, self.patch_size))
            return self.sparse_pattern().matrices(weights)
        if self._needs_weight_grad(None):
            return self.sparse_pattern().matrices(self.weights)  # raises the ValueError above
        key = (id(self.patches), self.patches._version)
        cached = self.__dict__.get("_csr_values")
        if cached is None or cached[0] != key or cached[1] is not self.patches:
            cached = self._csr_values = (key, self.patches, self.sparse_pattern().matrices(self.weights))
        return cached[2]

    def _needs_weight_grad(self, weights: torch.Tensor | None) -> bool:
        w = self.patches if weights is None else weights
        return torch.is_grad_enabled() and w.requires_grad

    def _sparse_product(self, matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        dtype = torch.result_type(x, matrix.values())
        xf = x.reshape(self.num_nodes, -1).to(dtype)
        return (matrix.to(dtype) @ xf).reshape(x.shape)

    def patch_products(self, u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        r"""Neighbour inner products :math:`G_{in} = \langle U_i, X_{k(i,n)}\rangle`, shape ``(I, N)``.

        :math:`G = \partial_\omega \langle U, \Omega X\rangle` (zero on invalid slots).
        ``u`` and ``x`` have shape ``(I, ...)`` (same shape).
        """
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

    # ------------------------------------------------------------- reference
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
