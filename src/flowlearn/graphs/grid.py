r"""Weight operators on image grids: a per-pixel weighted stencil.

Pixels are numbered row-major, :math:`i = r\,W + c`. The :math:`k\times k` neighbourhood (odd :math:`k`)
holds the pixels at offsets :math:`(d_r, d_c)\in\{-s..s\}^2`, :math:`s=(k-1)/2`, in row-major order (slot
:math:`n = (d_r+s)k + (d_c+s)`, centre :math:`(k^2-1)/2`). Offsets that leave the image are masked, so
border pixels average over the pixels that exist.  Products cost :math:`O(I\,k^2)` per column.
"""

from __future__ import annotations

import torch

from .._checks import UserInputError, check_int, check_memory
from .weights import WeightOperator

__all__ = ["GridWeights"]


class _Stencil(WeightOperator):
    """Products of a stencil on a row-major grid ``dims``: one shifted box per slot of ``offsets``."""

    dims: tuple
    offsets: list

    def _boxes(self, offset):
        """``(destination, source)`` slices of the nodes whose neighbour at ``offset`` exists, or None."""
        dst, src = [], []
        for d, n in zip(offset, self.dims):
            lo, hi = max(0, -d), min(n, n - d)
            if lo >= hi:
                return None
            dst.append(slice(lo, hi))
            src.append(slice(lo + d, hi + d))
        return tuple(dst), tuple(src)

    def _slots(self):
        """``(n, dst, src)`` of every slot with at least one valid node."""
        boxes = [(n, self._boxes(off)) for n, off in enumerate(self.offsets)]
        return [(n, *b) for n, b in boxes if b is not None]

    def _build_mask(self, device) -> torch.Tensor:
        m = torch.zeros(*self.dims, self.patch_size, dtype=torch.bool, device=device)
        for n, dst, _ in self._slots():
            m[dst + (n,)] = True
        return m.reshape(self.num_nodes, self.patch_size)

    def neighbour_index(self) -> torch.Tensor:
        off, k = torch.tensor(self.offsets, device=self.device), len(self.dims)
        idx = torch.zeros((), dtype=torch.long, device=self.device)
        for a, n in enumerate(self.dims):
            coord = torch.arange(n, device=self.device).view(*[-1 if b == a else 1 for b in range(k)], 1)
            idx = idx * n + (coord + off[:, a]).clamp(0, n - 1)
        return idx.reshape(self.num_nodes, self.patch_size)

    def _grid(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(*self.dims, -1)

    def _shifted_product(self, w, x, transpose: bool):
        """Omega x (node i gathers w_in x_k(i,n)) or Omega^T x (node k(i,n) receives w_in x_i)."""
        xg = self._grid(x)
        wg = w.reshape(*self.dims, self.patch_size, 1)
        out = torch.zeros_like(xg, dtype=torch.result_type(xg, w))
        for n, dst, src in self._slots():
            if transpose:
                out[src] += wg[dst + (n,)] * xg[dst]
            else:
                out[dst] += wg[dst + (n,)] * xg[src]
        return out.reshape(x.shape)

    def _apply(self, w, x):
        return self._shifted_product(w, x, transpose=False)

    def _apply_transpose(self, w, x):
        return self._shifted_product(w, x, transpose=True)

    def _patch_products(self, u, x):
        ug, xg = self._grid(u), self._grid(x)
        g = torch.zeros(*self.dims, self.patch_size, dtype=torch.result_type(ug, xg), device=ug.device)
        for n, dst, src in self._slots():
            g[dst + (n,)] = (ug[dst] * xg[src]).sum(-1)
        return g.reshape(self.num_nodes, self.patch_size)


class GridWeights(_Stencil):
    """:math:`\\Omega` on an ``height x width`` grid with ``size x size`` neighbourhoods.

    Parameters
    ----------
    height, width : int
        Image size; ``I = height * width`` nodes.
    size : int, odd
        Neighbourhood size (3 for 3x3, 5 for 5x5, ...).
    patches : array ``(I, size**2)`` or ``(size**2,)``, optional
        Non-negative, normalised weight patches (a 1-D patch is shared by all pixels). Default: uniform.
    dtype, device : optional
        Of the default uniform patches (given patches keep their own unless set).
    """

    def __init__(self, height: int, width: int, size: int = 3, patches=None, *, dtype=None, device=None):
        self.height = check_int("height", height, minimum=1)
        self.width = check_int("width", width, minimum=1)
        self.size = check_int("size", size, minimum=1, odd=True)
        largest = 2 * max(self.height, self.width) - 1
        if self.size > largest:
            raise UserInputError(f"size (the neighbourhood) must be at most 2 * max(height, width) - 1 = {largest} "
                                 f"for a {self.height}x{self.width} grid, got {self.size}")
        self.num_nodes, self.dims = self.height * self.width, (self.height, self.width)
        # mask (bool), patches and neighbour indices (8 bytes each) per node and offset
        check_memory(f"a {self.height}x{self.width} grid with {self.size}x{self.size} neighbourhoods",
                     17.0 * self.num_nodes * self.size**2, hint="use a smaller neighbourhood or image")
        self.patch_size = self.size**2
        s = self.size // 2
        self.offsets = [(dr, dc) for dr in range(-s, s + 1) for dc in range(-s, s + 1)]
        self.mask = self._build_mask(device)
        self._init_patches(patches, dtype, device)

    def __repr__(self) -> str:
        return f"GridWeights(height={self.height}, width={self.width}, size={self.size})"
